"""What every page handler shares: the session of the request, its language, rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from studyshare.portal import i18n, times
from studyshare.portal.adapters.public_api import PublicAPI
from studyshare.portal.security import NO_STORE, check_csrf
from studyshare.portal.sessions import Session

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters.update(local_time=times.local_time_filter, local_day=times.local_day_filter)


class LoginRequired(Exception):
    """The page needs a logged-in user; the login comes back to `next`."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def session_of(request: Request) -> Session:
    return request.state.session


def api_of(request: Request) -> PublicAPI:
    return request.app.state.api


def zone_of(request: Request) -> ZoneInfo:
    """The time zone the pages show and take times in (`portal_time_zone`)."""
    return request.app.state.time_zone


def language_of(request: Request) -> str:
    """The session's language (the user's, or the switcher's), else the browser's."""
    session = session_of(request)
    return session.language or i18n.from_accept_language(request.headers.get("accept-language"))


def here(request: Request) -> str:
    """This request's path and query, to come back to after a login."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def require_login(request: Request) -> Session:
    session = session_of(request)
    if not session.logged_in:
        raise LoginRequired(here(request))
    return session


async def checked(request: Request) -> Session:
    """The session, once the request's CSRF token is the session's."""
    session = session_of(request)
    await check_csrf(request, session.csrf)
    return session


def flash(request: Request, key: str, **values: Any) -> None:
    """A notice shown once, on the next page rendered for this session."""
    session_of(request).pending.setdefault("flash", []).append((key, values))


def flash_problem(request: Request, detail: str) -> None:
    """A refusal of the API (its problem+json `detail`), shown once on the next page."""
    session_of(request).pending.setdefault("problems", []).append(detail)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = session_of(request)
    language = language_of(request)
    notices = session.pending.pop("flash", [])
    problems = session.pending.pop("problems", [])
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "t": i18n.translator(language),
            "lang": language,
            "languages": i18n.LANGUAGES,
            "language_names": i18n.NAMES,
            "session": session,
            "csrf": session.csrf,
            "here": here(request),
            "notices": notices,
            "problems": problems,
            **context,
        },
        status_code=status,
    )
    response.headers["Cache-Control"] = NO_STORE
    return response


def redirect(url: str) -> RedirectResponse:
    """303 See Other: after a form, the browser GETs the next page."""
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request, next_url: str) -> Response:
    target = f"/login?next={quote(next_url, safe='')}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return redirect(target)
