"""The service desk: approve registrations, unlock accounts, remove a lost second factor,
approve group memberships; and a user's page (`/users/{id}`, the link of the registration
mail), which shows everyone the public contact data and the service desk its actions."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.security import read_form, safe_next
from studyshare.portal.sessions import Session
from studyshare.portal.web import (
    api_of,
    checked,
    flash,
    flash_problem,
    redirect,
    render,
    require_login,
)

router = APIRouter(include_in_schema=False)


def is_desk(session: Session) -> bool:
    """Whether to offer the service desk's pages (the API decides every action)."""
    return "service_desk" in (session.user.get("roles") or [])


async def _get(request: Request, path: str, **params: Any) -> Any:
    """The API's answer, or its refusal (shown where the answer would be)."""
    try:
        return await api_of(request).call(request.state.session, "GET", path, params=params or None)
    except ApiProblem as problem:
        return problem


@router.get("/desk")
async def desk(request: Request, q: str = "") -> Response:
    session = require_login(request)
    if session.patient:
        return redirect("/")
    pending, locked, invitations, found = await asyncio.gather(
        _get(request, "/api/users/pending"),
        _get(request, "/api/users/locked"),
        _get(request, "/api/groups/invitations"),
        _get(request, "/api/users", q=q.strip()) if q.strip() else _nothing(),
    )
    if isinstance(pending, ApiProblem) and pending.status == 403:
        return render(request, "error.html", 403, message_key="desk.only")
    return render(
        request,
        "desk.html",
        pending=pending,
        locked=locked,
        invitations=invitations,
        found=found,
        q=q.strip(),
    )


async def _nothing() -> None:
    return None


async def _desk_action(
    request: Request, method: str, path: str, done: str, default_back: str
) -> Response:
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    try:
        await api_of(request).call(session, method, path)
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    else:
        flash(request, done)
    return redirect(safe_next(form.get("next"), default_back))


@router.post("/users/{user_id}/approve")
async def approve(request: Request, user_id: str) -> Response:
    return await _desk_action(
        request, "POST", f"/api/users/{quote(user_id)}/approve", "desk.approved", "/desk"
    )


@router.post("/users/{user_id}/unlock")
async def unlock(request: Request, user_id: str) -> Response:
    return await _desk_action(
        request, "POST", f"/api/users/{quote(user_id)}/unlock", "desk.unlocked", "/desk"
    )


@router.post("/users/{user_id}/totp/remove")
async def remove_totp(request: Request, user_id: str) -> Response:
    return await _desk_action(
        request, "DELETE", f"/api/users/{quote(user_id)}/totp", "desk.totp_removed", "/desk"
    )


@router.post("/desk/groups/{group_id}/members/{user_id}/approve")
async def approve_membership(request: Request, group_id: str, user_id: str) -> Response:
    return await _desk_action(
        request,
        "POST",
        f"/api/groups/{quote(group_id)}/members/{quote(user_id)}/approve",
        "desk.membership_approved",
        "/desk",
    )


@router.get("/users/{user_id}")
async def user_page(request: Request, user_id: str) -> Response:
    """Public contact data for everyone; the account (status, roles, second factor) and its
    actions for those the API shows them to."""
    session = require_login(request)
    if session.patient:
        return redirect("/")
    try:
        user = await api_of(request).call(session, "GET", f"/api/users/{quote(user_id)}")
    except ApiProblem as problem:
        return render(request, "user.html", problem.status, user=None, error=problem.detail)
    return render(request, "user.html", user=user, error=None, desk=is_desk(session))
