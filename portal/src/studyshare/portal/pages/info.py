"""Pages the mails link to that a later version of the portal fills in: each says what it is
and links on, so no link of a mail or SMS ends on a 404."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.web import render, require_login

router = APIRouter(include_in_schema=False)


@router.get("/studies/{uid}/logging")
async def study_logging(request: Request, uid: str) -> Response:
    require_login(request)
    return render(
        request,
        "info.html",
        title="info.logging.title",
        text="info.logging.text",
        links=[(f"/studies/{quote(uid)}", "study.title"), ("/studies", "studies")],
    )
