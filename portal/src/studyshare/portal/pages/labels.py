"""My labels and my groups' labels: the list the share dialog offers to pick from ("You can add
the label for the user or on group level", manual v2). A user's label is seen by that user
only, a group's by its members (the share API decides)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.security import read_form
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


@router.get("/labels")
async def labels_page(request: Request) -> Response:
    session = require_login(request)
    if session.patient:
        return redirect("/")
    api = api_of(request)
    labels, groups = await asyncio.gather(
        api.call(session, "GET", "/api/labels"),
        api.call(session, "GET", "/api/users/me/group-confirmations"),
        return_exceptions=True,
    )
    for result in (labels, groups):
        if isinstance(result, BaseException) and not isinstance(result, ApiProblem):
            raise result
    error = labels.detail if isinstance(labels, ApiProblem) else None
    return render(
        request,
        "labels.html",
        labels=[] if isinstance(labels, BaseException) else labels or [],
        groups=[] if isinstance(groups, BaseException) else groups or [],
        error=error,
    )


@router.post("/labels")
async def add_label(request: Request) -> Response:
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    body = {"text": form.get("text", "")}
    if form.get("group_id"):
        body["group_id"] = form["group_id"]
    try:
        await api_of(request).call(session, "POST", "/api/labels", json=body)
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    else:
        flash(request, "labels.added")
    return redirect("/labels")


@router.post("/labels/{label_id}/remove")
async def remove_label(request: Request, label_id: str) -> Response:
    session = await checked(request)
    require_login(request)
    try:
        await api_of(request).call(session, "DELETE", f"/api/labels/{quote(label_id, safe='')}")
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    else:
        flash(request, "labels.removed")
    return redirect("/labels")
