"""Logging in with an external identity provider (eID), and linking one to the account.

The portal only carries the browser: identity hands out the provider's URL with a `state`
(`GET /api/auth/external/{provider}/start`; to link, `.../link/start` with the current
password, from the profile), the provider sends the browser back here, and
identity checks its answer (`.../callback`), asks the authenticator code of an account with
TOTP (`.../totp` with the `login_ticket`), or links the identity (`.../link`).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.pages import account
from studyshare.portal.security import read_form, safe_next
from studyshare.portal.web import (
    api_of,
    checked,
    flash,
    flash_problem,
    redirect,
    render,
    session_of,
)

router = APIRouter(include_in_schema=False)


async def providers(request: Request) -> list[dict[str, str]]:
    """The external identity providers identity offers (none when it offers none)."""
    try:
        answer = await api_of(request).anonymous("GET", "/api/auth/external")
    except ApiProblem:
        return []
    return list((answer or {}).get("providers") or [])


@router.get("/login/eid/{provider}")
async def start(request: Request, provider: str, next: str | None = None) -> Response:
    """To the provider, for a login."""
    return await _to_provider(request, provider, safe_next(next))


def link_start_path(provider: str) -> str:
    """Where identity starts a login whose identity is linked to the caller's account (with
    the current password: the profile's form, `pages.profile.link_identity`)."""
    return f"/api/auth/external/{quote(provider)}/link/start"


def callback_url(request: Request, provider: str) -> str:
    base = request.app.state.portal_settings.public_base_url.rstrip("/")
    return f"{base}/login/eid/{quote(provider)}/callback"


async def _to_provider(request: Request, provider: str, target: str) -> Response:
    params = {"redirect_uri": callback_url(request, provider)}
    path = f"/api/auth/external/{quote(provider)}/start"
    try:
        answer = await api_of(request).anonymous("GET", path, params=params)
    except ApiProblem as problem:
        return await _refused(request, problem.detail, target)
    return to_provider(request, provider, answer, "login", target)


def to_provider(
    request: Request, provider: str, started: dict[str, Any], mode: str, target: str
) -> Response:
    """The browser to the provider, with the `state` identity `started` (only this browser's
    own start comes back: login CSRF)."""
    session_of(request).pending["eid"] = {
        "provider": provider,
        "mode": mode,
        "next": target,
        "state": started["state"],
    }
    return RedirectResponse(started["authorization_url"], status_code=303)


@router.get("/login/eid/{provider}/callback")
async def callback(request: Request, provider: str) -> Response:
    session = session_of(request)
    started = session.pending.pop("eid", None)
    params = dict(request.query_params)
    if (
        not started
        or started.get("provider") != provider
        or not secrets.compare_digest(str(started.get("state")), params.get("state", ""))
    ):
        return await _refused(request, None, "/studies")
    path = f"/api/auth/external/{quote(provider)}"
    if started["mode"] == "link":
        try:
            await api_of(request).call(session, "POST", f"{path}/link", json=params)
        except ApiProblem as problem:
            flash_problem(request, problem.detail)
        else:
            flash(request, "eid.linked")
        return redirect("/profile")
    try:
        tokens = await api_of(request).anonymous("GET", f"{path}/callback", params=params)
    except ApiProblem as problem:
        if problem.rule == "TOTPRequired" and problem.body.get("login_ticket"):
            session.pending["eid_ticket"] = {
                "provider": provider,
                "ticket": problem.body["login_ticket"],
                "next": started["next"],
            }
            return render(request, "eid_totp.html", provider=provider, error=None)
        return await _refused(request, problem.detail, started["next"])
    return await account.signed_in(request, session, tokens, started["next"])


@router.post("/login/eid/{provider}/totp")
async def totp(request: Request, provider: str) -> Response:
    """The authenticator code of an account with TOTP, after its eID login."""
    session = await checked(request)
    form = await read_form(request)
    pending: dict[str, Any] | None = session.pending.pop("eid_ticket", None)
    if not pending or pending.get("provider") != provider:
        return await _refused(request, None, "/studies")
    try:
        tokens = await api_of(request).anonymous(
            "POST",
            f"/api/auth/external/{quote(provider)}/totp",
            json={"login_ticket": pending["ticket"], "otp": form.get("otp", "").strip()},
        )
    except ApiProblem as problem:  # the ticket is spent: start the eID login again
        return await _refused(request, problem.detail, pending["next"])
    return await account.signed_in(request, session, tokens, pending["next"])


async def _refused(request: Request, detail: str | None, target: str) -> Response:
    """The login page again, with the API's reason (or: start again)."""
    return render(
        request,
        "login.html",
        401,
        next=target,
        asked=False,
        form={},
        error=detail,
        error_key=None if detail else "eid.start_again",
        providers=await providers(request),
    )
