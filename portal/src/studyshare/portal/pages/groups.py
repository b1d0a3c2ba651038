"""My Groups (group practices): create, invite, accept or decline, leave, members and their
roles; and the membership confirmation asked every three months after login."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.fields import field_errors
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


def _member(request: Request) -> Session | Response:
    session = require_login(request)
    return redirect("/") if session.patient else session


async def _mine(request: Request, session: Session) -> tuple[list[dict], list[dict], list[str]]:
    """My groups (with composition and whether confirmation is due) and my invitations."""
    api = api_of(request)
    groups, invitations = await asyncio.gather(
        api.call(session, "GET", "/api/users/me/group-confirmations"),
        api.call(session, "GET", "/api/users/me/group-invitations"),
        return_exceptions=True,
    )
    for result in (groups, invitations):
        if isinstance(result, BaseException) and not isinstance(result, ApiProblem):
            raise result
    problems = [r.detail for r in (groups, invitations) if isinstance(r, ApiProblem)]
    return (
        [] if isinstance(groups, BaseException) else groups or [],
        [] if isinstance(invitations, BaseException) else invitations or [],
        problems,
    )


async def due_confirmations(request: Request, session: Session) -> bool:
    """Whether a group membership waits for its three-monthly confirmation (the API says)."""
    try:
        groups = await api_of(request).call(session, "GET", "/api/users/me/group-confirmations")
    except ApiProblem:
        return False
    return any(g.get("due") for g in groups or [])


@router.get("/groups")
async def my_groups(request: Request) -> Response:
    session = _member(request)
    if isinstance(session, Response):
        return session
    groups, invitations, problems = await _mine(request, session)
    return render(
        request,
        "groups.html",
        groups=groups,
        invitations=invitations,
        errors=problems,
        field={},
        values={},
    )


@router.post("/groups")
async def create_group(request: Request) -> Response:
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    body: dict[str, Any] = {"name": form.get("name", "").strip()}
    if form.get("email", "").strip():
        body["email"] = form["email"].strip()
    try:
        created = await api_of(request).call(session, "POST", "/api/groups", json=body)
    except ApiProblem as problem:
        groups, invitations, problems = await _mine(request, session)
        return render(
            request,
            "groups.html",
            problem.status if problem.status < 500 else 400,
            groups=groups,
            invitations=invitations,
            errors=problems,
            field=field_errors(problem, default="name", fields={"name": "name", "email": "email"}),
            values=body,
        )
    flash(request, "groups.created")
    return redirect(f"/groups/{quote(created['group_id'])}")


@router.get("/groups/{group_id}")
async def group_page(request: Request, group_id: str) -> Response:
    session = _member(request)
    if isinstance(session, Response):
        return session
    try:
        group = await api_of(request).call(session, "GET", f"/api/groups/{quote(group_id)}")
    except ApiProblem as problem:
        return render(request, "group.html", problem.status, group=None, error=problem.detail)
    me = session.user.get("user_id")
    mine = next((m for m in group.get("members", []) if m["user_id"] == me), None)
    roles = session.user.get("roles") or []
    confirmation = None
    if mine is not None:
        groups, _, _ = await _mine(request, session)
        confirmation = next((g for g in groups if g.get("group_id") == group_id), None)
    return render(
        request,
        "group.html",
        group=group,
        error=None,
        me=me,
        may_manage=bool(mine and mine.get("admin")) or "service_desk" in roles,
        is_member=mine is not None,
        confirmation=confirmation,
    )


@router.get("/groups/{group_id}/candidates")
async def candidates(request: Request, group_id: str, q: str = "") -> Response:
    """The type-ahead of the invite form: users matching `q` (the recipient search)."""
    session = require_login(request)
    items: list[dict[str, Any]] = []
    if len(q.strip()) >= 2:
        try:
            found = await api_of(request).call(
                session, "GET", "/api/recipients", params={"q": q.strip(), "kind": "user"}
            )
            items = found.get("items", [])
        except ApiProblem:
            items = []
    return render(
        request, "partials/group_candidates.html", items=items, q=q.strip(), group_id=group_id
    )


async def _group_action(
    request: Request, method: str, path: str, done: str, back: str, body: Any = None
) -> Response:
    session = await checked(request)
    require_login(request)
    try:
        await api_of(request).call(session, method, path, json=body)
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    else:
        flash(request, done)
    return redirect(back)


@router.post("/groups/{group_id}/invite")
async def invite(request: Request, group_id: str) -> Response:
    form = await read_form(request)
    return await _group_action(
        request,
        "POST",
        f"/api/groups/{quote(group_id)}/members",
        "groups.invited",
        f"/groups/{quote(group_id)}",
        {"user_id": form.get("user_id", ""), "admin": form.get("admin") == "on"},
    )


@router.post("/groups/{group_id}/members/{user_id}/remove")
async def remove(request: Request, group_id: str, user_id: str) -> Response:
    return await _group_action(
        request,
        "DELETE",
        f"/api/groups/{quote(group_id)}/members/{quote(user_id)}",
        "groups.removed",
        f"/groups/{quote(group_id)}",
    )


@router.post("/groups/{group_id}/members/{user_id}/admin")
async def set_admin(request: Request, group_id: str, user_id: str) -> Response:
    form = await read_form(request)
    return await _group_action(
        request,
        "PATCH",
        f"/api/groups/{quote(group_id)}/members/{quote(user_id)}",
        "groups.saved",
        f"/groups/{quote(group_id)}",
        {"admin": form.get("admin") == "true"},
    )


@router.post("/groups/{group_id}/members/{user_id}/primary")
async def set_primary(request: Request, group_id: str, user_id: str) -> Response:
    return await _group_action(
        request,
        "PUT",
        f"/api/groups/{quote(group_id)}/primary-contact",
        "groups.saved",
        f"/groups/{quote(group_id)}",
        {"user_id": user_id},
    )


@router.post("/groups/{group_id}/leave")
async def leave(request: Request, group_id: str) -> Response:
    session = request.state.session
    me = session.user.get("user_id", "")
    return await _group_action(
        request,
        "DELETE",
        f"/api/groups/{quote(group_id)}/members/{quote(me)}",
        "groups.left",
        "/groups",
    )


@router.post("/groups/{group_id}/accept")
async def accept(request: Request, group_id: str) -> Response:
    form = await read_form(request)
    return await _group_action(
        request,
        "POST",
        f"/api/groups/{quote(group_id)}/accept-membership",
        "groups.accepted",
        safe_next(form.get("next"), f"/groups/{quote(group_id)}"),
    )


@router.post("/groups/{group_id}/decline")
async def decline(request: Request, group_id: str) -> Response:
    form = await read_form(request)
    return await _group_action(
        request,
        "POST",
        f"/api/groups/{quote(group_id)}/decline-membership",
        "groups.declined",
        safe_next(form.get("next"), "/groups"),
    )


@router.post("/groups/{group_id}/confirm")
async def confirm(request: Request, group_id: str) -> Response:
    form = await read_form(request)
    return await _group_action(
        request,
        "POST",
        f"/api/groups/{quote(group_id)}/confirm-membership",
        "groups.confirmed",
        safe_next(form.get("next"), "/groups"),
    )


@router.post("/groups/{group_id}/report")
async def report(request: Request, group_id: str) -> Response:
    """ "Report a wrong composition": the group's admins (or the service desk) are told."""
    form = await read_form(request)
    return await _group_action(
        request,
        "POST",
        f"/api/groups/{quote(group_id)}/report-composition",
        "confirm.reported",
        safe_next(form.get("next"), "/group-confirmations"),
        {"remark": form.get("remark", "").strip()[:2000]},
    )


@router.get("/group-invitations")
async def invitations_page(request: Request) -> Response:
    """The link of the invitation mail: accept or decline each invitation."""
    session = _member(request)
    if isinstance(session, Response):
        return session
    _, invitations, problems = await _mine(request, session)
    return render(request, "group_invitations.html", invitations=invitations, errors=problems)


@router.get("/group-confirmations")
async def confirmations_page(request: Request, next: str | None = None) -> Response:
    """Every three months (and from the reminder mail): is each group's composition right?
    After login the portal comes here while one is due, then goes on to `next`."""
    session = _member(request)
    if isinstance(session, Response):
        return session
    groups, _, problems = await _mine(request, session)
    target = safe_next(next)
    here = "/group-confirmations" + (f"?next={quote(target, safe='')}" if next else "")
    return render(
        request,
        "group_confirmations.html",
        groups=groups,
        errors=problems,
        next=target,
        back=here,
        any_due=any(g.get("due") for g in groups),
    )
