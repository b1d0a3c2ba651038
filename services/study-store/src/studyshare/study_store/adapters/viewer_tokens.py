"""Signing and verifying viewer tokens (HS256 with the study store's own key).

A viewer token is a JWT whose header names the key id `viewer`: identity's key set has no such
key, so no service but the study store ever accepts one (see `domain.viewer`). It lives
`ttl_s` seconds at most, and never longer than the access token it was issued for. Its holder
can read a JWT, so the scope travels sealed (AES-GCM under a key of its own): on an anonymized
share it names the real study, which its recipient must never learn.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.errors import Unauthorized
from studyshare.study_store.domain.viewer import ViewerClaims, ViewerScope

KEY_ID = "viewer"
ISSUER = "studyshare-study-store"
AUDIENCE = "studyshare-viewer"
ALGORITHM = "HS256"
#: the holder's claims that travel in a viewer token (the rest are the token's own)
HOLDER_CLAIMS = frozenset(AccessClaims.model_fields) - {"iss", "aud", "iat", "exp", "jti"}


def is_viewer_token(token: str) -> bool:
    """Whether the bearer token says it is a viewer token (it is verified separately)."""
    try:
        return jwt.get_unverified_header(token).get("kid") == KEY_ID
    except jwt.PyJWTError:
        return False


class ViewerTokens:
    def __init__(self, secret: str, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("viewer tokens need a signing secret")
        # a key of its own, whatever the secret's length (HS256 wants 32 bytes at least)
        self.key = hashlib.sha256(f"studyshare-viewer-token\x00{secret}".encode()).digest()
        self.sealing = AESGCM(
            hashlib.sha256(f"studyshare-viewer-scope\x00{secret}".encode()).digest()
        )
        self.ttl_s = ttl_s
        self.clock = clock

    def issue(self, holder: AccessClaims, scope: ViewerScope) -> tuple[str, int]:
        """A viewer token for `holder` limited to `scope`, and its lifetime in seconds."""
        now = int(self.clock())
        expires = min(now + self.ttl_s, holder.exp)
        body = {
            **holder.model_dump(include=HOLDER_CLAIMS, mode="json"),
            "viewer": self._sealed(scope),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(body, self.key, algorithm=ALGORITHM, headers={"kid": KEY_ID})
        return token, max(expires - now, 0)

    def verify(self, token: str) -> ViewerClaims:
        """The claims of a genuine, unexpired viewer token; `Unauthorized` otherwise."""
        try:
            body = jwt.decode(
                token,
                self.key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("the viewer token is not valid") from exc
        try:
            claims = ViewerClaims.model_validate({**body, "viewer": self._opened(body["viewer"])})
        except (ValueError, KeyError, TypeError, InvalidTag) as exc:
            raise Unauthorized("the viewer token is not valid") from exc
        if claims.exp <= self.clock():  # as PyJWT: expired at `exp` itself
            raise Unauthorized("the viewer token has expired; open the study again")
        return claims

    def _sealed(self, scope: ViewerScope) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self.sealing.encrypt(nonce, scope.model_dump_json().encode(), None)
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def _opened(self, sealed: str) -> ViewerScope:
        raw = base64.urlsafe_b64decode(sealed)
        return ViewerScope.model_validate_json(self.sealing.decrypt(raw[:12], raw[12:], None))
