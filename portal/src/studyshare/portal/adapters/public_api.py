"""The public API of the platform, called with the session's bearer token.

The portal decides nothing about access: it asks, and shows the answer (or the refusal's
problem+json `detail`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import httpx

from studyshare.plumbing.client_address import vouched
from studyshare.portal.sessions import Session

#: refresh a little before the access token ends, not after a refused request
REFRESH_MARGIN_S = 30
#: the rules of a refused token (plumbing.auth); any other 401 is a domain answer (a wrong
#: one-time password) and is never retried
TOKEN_RULES = frozenset({None, "Unauthorized", "SessionEnded"})


class ApiProblem(Exception):
    """A refusal of the API: its status and problem+json fields."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.rule: str | None = body.get("rule")
        self.detail: str = str(body.get("detail") or body.get("title") or f"HTTP {status}")
        super().__init__(f"{status} {self.rule or ''} {self.detail}")


class SessionEnded(ApiProblem):
    """The session's tokens are gone or refused: log in again."""


def problem_of(response: httpx.Response) -> ApiProblem:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiProblem(response.status_code, body)


#: the address of the browser the portal's current request acts for (set by the app)
BROWSER: ContextVar[str | None] = ContextVar("browser", default=None)


class PublicAPI:
    """One shared client for the whole portal; every call names the session it acts for, and
    carries the browser's address vouched for (`plumbing.client_address`) when a key is set."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        client_secret: str | None = None,
        host: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`host`: the public name the gateway serves HTTPS for, when `base_url` is its
        in-cluster address: sent as the Host and as the TLS server name (SNI), so the gateway
        picks its listener and the certificate is verified for that name."""
        self.client_secret = client_secret
        self.host = host
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"Host": host} if host else None,
            event_hooks={"request": [self._vouch]},
            transport=transport,
        )

    async def _vouch(self, request: httpx.Request) -> None:
        browser = BROWSER.get()
        if self.client_secret and browser:
            request.headers.update(vouched(self.client_secret, browser, time.time()))
        if self.host:
            request.extensions["sni_hostname"] = self.host

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- without a session ---------------------------------------------------------------

    async def anonymous(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, **kwargs)
        return _answer(response)

    # -- as the session's user -----------------------------------------------------------

    async def call(self, session: Session, method: str, path: str, **kwargs: Any) -> Any:
        """JSON (or None) of a successful answer; `ApiProblem` otherwise."""
        response = await self.send(session, method, path, **kwargs)
        return _answer(response)

    async def send(self, session: Session, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The raw answer (refreshing the tokens once when needed)."""
        await self._fresh(session)
        extra = kwargs.pop("headers", None) or {}
        held = session.refresh_token
        response = await self.client.request(
            method, path, headers={**extra, **_bearer(session)}, **kwargs
        )
        if _token_refused(response) and await self._refresh(session, held):
            response = await self.client.request(
                method, path, headers={**extra, **_bearer(session)}, **kwargs
            )
        if _token_refused(response):
            raise SessionEnded(401, problem_of(response).body)
        return response

    @asynccontextmanager
    async def stream(
        self, session: Session, path: str, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """A streamed GET (images, downloads)."""
        await self._fresh(session)
        request = self.client.build_request("GET", path, headers={**headers, **_bearer(session)})
        response = await self.client.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def logout(self, session: Session) -> None:
        """Ends the session at identity (both tokens); the portal forgets them either way."""
        if session.access_token is None:
            return
        try:
            await self.client.post(
                "/api/auth/logout",
                json={"refresh_token": session.refresh_token},
                headers=_bearer(session),
            )
        except httpx.HTTPError:
            pass

    async def _fresh(self, session: Session) -> None:
        if session.access_token is None:
            raise SessionEnded(401, {"detail": "Not logged in"})
        if time.time() > session.access_expires_at - REFRESH_MARGIN_S:
            await self._refresh(session, session.refresh_token)

    async def _refresh(self, session: Session, held: str | None) -> bool:
        """New tokens for the refresh token `held` (it is then spent); False when refused.

        A session's calls refresh one at a time: a page asks the API several things at once,
        and a spent refresh token presented again is taken for a stolen one (identity ends the
        session). A call that finds `held` already replaced takes the new tokens."""
        async with session.refreshing:
            if session.refresh_token != held:
                return session.logged_in
            if not held:
                return False
            response = await self.client.post("/api/auth/refresh", json={"refresh_token": held})
            if response.status_code != 200:
                session.sign_out()
                return False
            user, patient = session.user, session.patient
            session.sign_in(response.json(), patient=patient)
            session.user = user
            return True


def _token_refused(response: httpx.Response) -> bool:
    return response.status_code == 401 and problem_of(response).rule in TOKEN_RULES


def _bearer(session: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.access_token}"}


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise problem_of(response)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()
