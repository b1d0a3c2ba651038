"""Pages the mails link to that a later version of the portal fills in: each says what it is
and links on, so no link of a mail or SMS ends on a 404."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.web import render, require_login

router = APIRouter(include_in_schema=False)


@router.get("/register")
async def register(request: Request, email: str = "", bucket: str = "") -> Response:
    """The invitation link of a mail to a new recipient by e-mail."""
    return render(
        request,
        "info.html",
        title="info.register.title",
        text="info.register.text",
        links=[("/login", "login")],
    )


@router.get("/group-confirmations")
async def group_confirmations(request: Request) -> Response:
    require_login(request)
    return render(
        request,
        "info.html",
        title="info.group.title",
        text="info.group.text",
        links=[("/studies", "studies")],
    )


@router.get("/users/{user_id}")
async def user_page(request: Request, user_id: str) -> Response:
    require_login(request)
    return render(
        request,
        "info.html",
        title="info.user.title",
        text="info.user.text",
        links=[("/studies", "studies")],
    )
