"""Logging in with an external identity provider (eID), and linking one to the account.

The portal only carries the browser: identity hands out the provider's URL with a `state`
(`GET /api/auth/external/{provider}/start`), the provider sends the browser back here, and
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
    LoginRequired,
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


def _callback_url(request: Request, provider: str) -> str:
    base = request.app.state.portal_settings.public_base_url.rstrip("/")
    return f"{base}/login/eid/{quote(provider)}/callback"


@router.get("/login/eid/{provider}")
async def start(request: Request, provider: str, next: str | None = None) -> Response:
    """To the provider, for a login."""
    return await _to_provider(request, provider, safe_next(next), linking=False)


@router.post("/login/eid/{provider}/link")
async def start_link(request: Request, provider: str) -> Response:
    """To the provider, to link the identity to the logged-in account: the profile's button,
    a form with the session's CSRF token. (A link once started it: a page or a mail could
    have a logged-in user link the identity their browser was signed in with at the
    provider, an attacker's on a shared workstation.)"""
    session = await checked(request)
    if not session.logged_in or session.patient:
        raise LoginRequired("/profile")
    return await _to_provider(request, provider, "/profile", linking=True)


async def _to_provider(request: Request, provider: str, target: str, linking: bool) -> Response:
    session = session_of(request)
    params = {"redirect_uri": _callback_url(request, provider)}
    path = f"/api/auth/external/{quote(provider)}/start"
    try:
        if linking:
            answer = await api_of(request).call(session, "GET", path, params=params)
        else:
            answer = await api_of(request).anonymous("GET", path, params=params)
    except ApiProblem as problem:
        return await _refused(request, problem.detail, target)
    session.pending["eid"] = {
        "provider": provider,
        "mode": "link" if linking else "login",
        "next": target,
        "state": answer["state"],  # only this browser's own start comes back (login CSRF)
    }
    return RedirectResponse(answer["authorization_url"], status_code=303)


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
