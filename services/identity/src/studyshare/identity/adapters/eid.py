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

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlencode

from studyshare.plumbing.errors import Unauthorized


@dataclass(frozen=True)
class ExternalIdentity:
    """What a provider vouches for."""

    subject: str
    first_name: str | None = None
    last_name: str | None = None
    physician_number: str | None = None


@runtime_checkable
class ExternalIdentityProvider(Protocol):
    """`name` is the provider's path segment; a `label` attribute, when present, is what
    the portal's button says."""

    name: str

    def authorization_url(self, state: str, redirect_uri: str) -> str:
        """The URL that starts the authentication at the provider."""
        ...

    async def complete(self, params: dict[str, str]) -> ExternalIdentity:
        """Verify the provider's callback; raise `Unauthorized` if it does not hold."""
        ...


class DemoEid:
    """A stand-in eID for development and tests (`STUDYSHARE_DEMO_EID`, refused elsewhere):
    its "authentication" is a page of identity that asks a national register number and
    sends the browser back with the number's digest as `subject`, signed with a key of this
    process, which `complete` checks. It exercises the whole external-login path (state,
    callback, link, TOTP step) without a real provider."""

    name = "demo-eid"
    label = "eID (demo)"

    def __init__(self, public_base_url: str) -> None:
        self.public_base_url = public_base_url.rstrip("/")
        self._key = secrets.token_bytes(32)

    def authorization_url(self, state: str, redirect_uri: str) -> str:
        query = urlencode({"state": state, "redirect_uri": redirect_uri})
        return f"{self.public_base_url}/api/auth/external/{self.name}/authorize?{query}"

    def allows(self, redirect_uri: str) -> bool:
        """Only back to our own portal: the demo page is no open redirect."""
        return redirect_uri.startswith(self.public_base_url + "/")

    def answer(self, state: str, national_number: str) -> dict[str, str]:
        """The callback's parameters for someone who proved `national_number`."""
        subject = hashlib.sha256(f"demo-eid:{national_number.strip()}".encode()).hexdigest()
        return {"state": state, "subject": subject, "signature": self._sign(state, subject)}

    def _sign(self, state: str, subject: str) -> str:
        return hmac.new(self._key, f"{state}\x00{subject}".encode(), hashlib.sha256).hexdigest()

    async def complete(self, params: dict[str, str]) -> ExternalIdentity:
        state, subject = params.get("state", ""), params.get("subject", "")
        signature = params.get("signature", "")
        if not subject or not hmac.compare_digest(signature, self._sign(state, subject)):
            raise Unauthorized("the demo eID answer is not signed by this process")
        return ExternalIdentity(subject=subject)
