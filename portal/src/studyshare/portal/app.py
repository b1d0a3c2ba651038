"""The portal's FastAPI app: sessions, security headers, pages, static files, health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from studyshare.plumbing.client_address import forwarded_address
from studyshare.plumbing.http import QUIET_ROUTES
from studyshare.plumbing.http import create_app as create_service_app
from studyshare.plumbing.logging import get_logger
from studyshare.portal.adapters.public_api import BROWSER, PublicAPI, SessionEnded
from studyshare.portal.pages import (
    access,
    account,
    audit,
    desk,
    eid,
    groups,
    labels,
    my_shares,
    openings,
    profile,
    register,
    shares,
    studies,
    viewer,
)
from studyshare.portal.security import CsrfRefused, security_headers
from studyshare.portal.sessions import SessionStore, cookie_name
from studyshare.portal.settings import PortalSettings
from studyshare.portal.web import TEMPLATES, LoginRequired, here, login_redirect, render

log = get_logger(__name__)

STATIC = Path(__file__).parent / "static"


def create_app(settings: PortalSettings | None = None, api: PublicAPI | None = None) -> FastAPI:
    settings = settings or PortalSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await app.state.api.aclose()

    app = create_service_app(
        settings,
        title="StudyShare portal",
        routers=[
            account.router,
            eid.router,
            register.router,
            studies.router,
            my_shares.router,
            labels.router,
            openings.router,
            shares.router,
            groups.router,
            profile.router,
            desk.router,
            access.router,
            audit.router,
            viewer.router,
        ],
        lifespan=lifespan,
    )
    app.openapi_url = None  # pages, not an API: the gateway's /openapi.json leaves them out
    app.state.portal_settings = settings
    app.state.time_zone = ZoneInfo(settings.portal_time_zone)  # forms: `web.zone_of`
    TEMPLATES.env.globals["zone"] = app.state.time_zone  # pages: the `times` filters
    app.state.sessions = SessionStore(settings.portal_session_idle_s, settings.portal_session_max)
    app.state.api = api or PublicAPI(
        settings.portal_api_url,
        settings.portal_api_timeout_s,
        settings.portal_client_secret,
        settings.portal_api_host,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    headers = security_headers(https=settings.secure_cookies)
    cookie = cookie_name(settings.secure_cookies)

    @app.middleware("http")
    async def sessions_and_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        BROWSER.set(  # for identity's lockout
            forwarded_address(
                request.headers.get("x-forwarded-for", ""),
                request.client.host if request.client else None,
                settings.portal_trusted_proxies,
            )
        )
        if request.url.path.startswith("/static/") or request.url.path in QUIET_ROUTES:
            response = await call_next(request)  # no page: no session is made for it
        else:
            response = await with_session(request, call_next)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    async def with_session(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        store: SessionStore = app.state.sessions
        sent = request.cookies.get(cookie)
        session = store.get(sent) or store.new()
        request.state.session = session
        response = await call_next(request)
        if session.id != sent and store.get(session.id) is session:
            response.set_cookie(
                cookie,
                session.id,
                httponly=True,
                samesite="lax",
                secure=settings.secure_cookies,
                path="/",
            )
        return response

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(request, exc.next_url)

    @app.exception_handler(SessionEnded)
    async def session_ended(request: Request, exc: SessionEnded) -> Response:
        request.state.session.sign_out()
        return login_redirect(request, here(request) if request.method == "GET" else "/studies")

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        log.info("portal.csrf_refused", path=request.url.path)
        return render(request, "error.html", 403, message_key="error.csrf")

    @app.exception_handler(httpx.TransportError)
    async def api_unreachable(request: Request, exc: httpx.TransportError) -> Response:
        log.warning("portal.api_unreachable", error=type(exc).__name__)
        return render(request, "error.html", 503, message_key="error.unavailable")

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        return render(request, "error.html", 404, message_key="error.not_found")

    return app
