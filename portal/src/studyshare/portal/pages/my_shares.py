"""My shares: the buckets I sent, newest first, each linking to its page (`/shares/{id}`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.web import api_of, redirect, render, require_login

router = APIRouter(include_in_schema=False)

PAGE = 50


@router.get("/shares")
async def my_shares(request: Request, offset: int = 0) -> Response:
    session = require_login(request)
    if session.patient:
        return redirect("/")
    offset = max(0, offset)
    try:
        sent = await api_of(request).call(
            session, "GET", "/api/shares/sent", params={"limit": PAGE, "offset": offset}
        )
    except ApiProblem as problem:
        return render(request, "my_shares.html", problem.status, sent=None, error=problem.detail)
    return render(request, "my_shares.html", sent=sent, error=None, page=PAGE, offset=offset)
