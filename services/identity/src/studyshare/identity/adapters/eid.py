"""External identity providers (Belgian eID / itsme / FAS, DigiD, ...) behind one interface.

StudyShare ships no real eID integration. A deployment plugs one in by implementing
`ExternalIdentityProvider` and registering it on the API (`app.state.identity_providers`):

1. `authorization_url(state, redirect_uri)`: where the browser is sent to authenticate (for
   Belgian eID through the federal FAS, an OpenID Connect authorisation request).
2. The provider redirects back to `GET /api/auth/external/{provider}/callback?...`; identity
   calls `complete(params)`, which must verify the provider's answer (signature, nonce/state,
   audience, expiry) and return the `ExternalIdentity` it vouches for.
3. The provider's stable `subject` (never the national register number in clear: hash it with
   a deployment secret if the provider gives nothing better) is looked up in the links made by
   `POST /api/auth/external/{provider}/link` (a logged-in user proves the same identity once).
   A linked identity logs in with `LoginSucceeded(method="eid")`; an unknown one is refused
   with `ExternalIdentityNotLinked`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ExternalIdentity:
    """What a provider vouches for."""

    subject: str
    first_name: str | None = None
    last_name: str | None = None
    physician_number: str | None = None


@runtime_checkable
class ExternalIdentityProvider(Protocol):
    name: str

    def authorization_url(self, state: str, redirect_uri: str) -> str:
        """The URL that starts the authentication at the provider."""
        ...

    async def complete(self, params: dict[str, str]) -> ExternalIdentity:
        """Verify the provider's callback; raise `Unauthorized` if it does not hold."""
        ...
