"""Bearer-token verification against identity's JWKS, as FastAPI dependencies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request

from studyshare.contracts.tokens import AUDIENCE, ISSUER, AccessClaims
from studyshare.plumbing.errors import Forbidden, Unauthorized, Unavailable
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.revocations import SessionRevocations

log = get_logger(__name__)

ALGORITHMS = ["EdDSA", "ES256", "RS256"]


class SessionEnded(Unauthorized):
    """The token is genuine and unexpired, but identity ended its session or account."""


class SessionStatusUnknown(Unavailable):
    """This process cannot tell now whether the token's session has ended (it lost touch
    with identity's list of ended sessions for longer than its lease): refused, not 401."""

    title = "Service unavailable"


class JWKSVerifier:
    """Verifies access tokens; caches the key set and refetches it for an unknown key id.

    A token that verified once is remembered (up to `max_remembered`, oldest forgotten first)
    with its claims, so a client's next requests skip the signature check (most of the cost of
    a small authorized request). Only its expiry still changes with time: it is checked on
    every use, to the second as PyJWT does (`exp <= now` is expired). A new key set forgets
    every remembered token, so a withdrawn key ends its tokens at the next refresh.

    With `revocations` (kept current from identity), every use of a token, remembered or not,
    is refused with `SessionEnded` once identity ended its session or account. With
    `available` (the lease of `session_feed.SessionEndFeed`), every token is refused with
    `SessionStatusUnknown` while it says False: the list of ends may be missing one.
    """

    def __init__(
        self,
        jwks_url: str,
        cache_seconds: int = 300,
        min_refetch_s: float = 5.0,
        max_remembered: int = 10_000,
        clock: Callable[[], float] = time.time,
        revocations: SessionRevocations | None = None,
        available: Callable[[], bool] | None = None,
    ):
        self.jwks_url = jwks_url
        self.cache_seconds = cache_seconds
        self.min_refetch_s = min_refetch_s
        self.max_remembered = max_remembered
        self.clock = clock
        self.revocations = revocations
        self.available = available
        self._keys: dict[str, Any] = {}
        self._jwks: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._verified: dict[str, AccessClaims] = {}

    @classmethod
    def from_jwks(cls, jwks: dict[str, Any]) -> JWKSVerifier:
        """A verifier with a fixed key set (tests, or keys mounted from a file)."""
        verifier = cls("file:jwks", cache_seconds=10**9)
        verifier._keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id}
        verifier._fetched_at = float("inf")
        return verifier

    async def _refresh(self, force: bool = False) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if self._keys and age < (self.min_refetch_s if force else self.cache_seconds):
                return
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
            jwks = response.json()
            keyset = jwt.PyJWKSet.from_dict(jwks)
            if jwks != self._jwks:
                self._verified.clear()
            self._jwks = jwks
            self._keys = {k.key_id: k for k in keyset.keys if k.key_id}
            self._fetched_at = time.monotonic()

    async def key_for(self, kid: str | None) -> Any:
        if time.monotonic() - self._fetched_at > self.cache_seconds or not self._keys:
            await self._refresh()
        if kid not in self._keys and self._fetched_at != float("inf"):
            await self._refresh(force=True)
        if kid not in self._keys:
            raise Unauthorized("the token was signed with an unknown key")
        return self._keys[kid]

    async def verify(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is not None and time.monotonic() - self._fetched_at <= self.cache_seconds:
            if claims.exp <= self.clock():
                raise Unauthorized("the access token has expired")
            self.check_live(claims)
            return claims
        claims = await self._verify_signed(token)
        if len(self._verified) >= self.max_remembered:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        self.check_live(claims)
        return claims

    def check_live(self, claims: AccessClaims, kind: str = "access token") -> None:
        """Refuse claims whose session identity ended, or when that cannot be told now."""
        if self.available is not None and not self.available():
            raise SessionStatusUnknown(
                "this service cannot confirm right now that the session is still open; retry"
            )
        if self.revocations is None:
            return
        reason = self.revocations.refusal(claims)
        if reason is not None:
            raise SessionEnded(f"{reason}; this {kind} no longer works, log in again")

    async def _verify_signed(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("the bearer token is malformed") from exc
        try:
            key = await self.key_for(header.get("kid"))
        except httpx.HTTPError as exc:
            log.warning("jwks.unreachable", error=str(exc))
            raise Unauthorized("the token cannot be verified right now") from exc
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=ALGORITHMS, audience=AUDIENCE, issuer=ISSUER
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the access token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("the access token is not valid") from exc
        return AccessClaims.model_validate(claims)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()


async def current_principal(request: Request) -> AccessClaims:
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("a bearer token is required")
    verifier: JWKSVerifier = request.app.state.verifier
    claims = await verifier.verify(token)
    request.state.principal = claims
    return claims


async def optional_principal(request: Request) -> AccessClaims | None:
    if bearer_token(request) is None:
        return None
    return await current_principal(request)


CurrentPrincipal = Annotated[AccessClaims, Depends(current_principal)]
OptionalPrincipal = Annotated[AccessClaims | None, Depends(optional_principal)]


def require_roles(*roles: str):
    """A dependency that admits only principals holding one of `roles`."""

    async def check(principal: CurrentPrincipal) -> AccessClaims:
        if not principal.has_role(*roles):
            raise Forbidden(f"this requires one of the roles: {', '.join(roles)}")
        return principal

    return Depends(check)


async def require_user(principal: CurrentPrincipal) -> AccessClaims:
    if principal.kind != "user":
        raise Forbidden("this is only for registered users")
    return principal


CurrentUser = Annotated[AccessClaims, Depends(require_user)]
