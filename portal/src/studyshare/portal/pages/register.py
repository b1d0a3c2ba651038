"""Self-registration (the service desk approves it) and accepting an invitation by e-mail.

The invitation mail of a new recipient links to `/register?email=...&bucket=...&token=...`:
the form opens prefilled; once the account is approved and logged in, the same link accepts the
invitation, which the API grants only to the account with that e-mail address that brings the
link's token (it proves the mailbox: `contracts.invitations`).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal import i18n
from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.fields import field_errors
from studyshare.portal.security import read_form
from studyshare.portal.web import (
    api_of,
    checked,
    flash,
    language_of,
    redirect,
    render,
    require_login,
    session_of,
)

router = APIRouter(include_in_schema=False)

#: how long accepting an invitation waits for the study store's access decision to follow
SETTLE_S, SETTLE_POLL_S = 20.0, 1.0
PROFESSIONS = ("physician", "dentist", "specialist", "department_staff", "other")
REGISTRIES = ("RIZIV", "BIG", "INSEE", "HIN", "UCGN", "PNB", "NPI")
RULES = {"UsernameTaken": "username", "WeakPassword": "password"}
FIELDS = {
    **{
        name: name
        for name in ("username", "password", "first_name", "last_name", "email", "mobile")
    },
    "language": "language",
    "profession": "profession",
    "physician_numbers": "physician_number",
}
TEXT_FIELDS = ("username", "first_name", "last_name", "email", "mobile", "physician_number")


def registration(form: dict[str, str], language: str) -> dict[str, Any]:
    """The `POST /api/users/register` body of the form."""
    body: dict[str, Any] = {
        "username": form.get("username", "").strip(),
        "password": form.get("password", ""),
        "first_name": form.get("first_name", "").strip(),
        "last_name": form.get("last_name", "").strip(),
        "email": form.get("email", "").strip() or None,
        "email_public": form.get("email_public") == "on",
        "mobile": form.get("mobile", "").strip() or None,
        "mobile_public": form.get("mobile_public") == "on",
        "language": i18n.supported(form.get("language")) or language,
        "profession": form.get("profession") or "physician",
    }
    if form.get("physician_number", "").strip():
        registry, number = form.get("registry") or "RIZIV", form["physician_number"].strip()
        body["physician_numbers"] = [{"registry": registry, "number": number}]
    return body


def invitation_link(email: str, bucket: str, token: str) -> str:
    return "/register?" + urlencode({"email": email, "bucket": bucket, "token": token})


def login_link(email: str, bucket: str, token: str) -> str:
    """Log in, then back to the invitation (when there is one)."""
    if not bucket:
        return "/login"
    return "/login?next=" + quote(invitation_link(email, bucket, token), safe="")


@router.get("/register")
async def register_page(
    request: Request, email: str = "", bucket: str = "", token: str = ""
) -> Response:
    session = session_of(request)
    if session.logged_in and not session.patient:
        return render(
            request,
            "invitation.html",
            email=email,
            bucket=bucket,
            token=token,
            me=session.user,
            error=None,
        )
    values = {"email": email, "language": language_of(request)}
    return _form(request, values, bucket, token, {})


def _form(
    request: Request,
    values: dict[str, str],
    bucket: str,
    token: str,
    errors: dict[str, str],
    status=200,
) -> Response:
    return render(
        request,
        "register.html",
        status,
        values=values,
        bucket=bucket,
        token=token,
        errors=errors,
        professions=PROFESSIONS,
        registries=REGISTRIES,
        login_link=login_link(values.get("email", ""), bucket, token),
    )


@router.post("/register")
async def register(request: Request) -> Response:
    await checked(request)
    form = await read_form(request)
    bucket, token = form.get("bucket", ""), form.get("token", "")
    body = registration(form, language_of(request))
    try:
        created = await api_of(request).anonymous("POST", "/api/users/register", json=body)
    except ApiProblem as problem:
        values = {k: form.get(k, "") for k in (*TEXT_FIELDS, "language", "profession", "registry")}
        values |= {k: form.get(k) == "on" for k in ("email_public", "mobile_public")}
        errors = field_errors(problem, RULES, "form", FIELDS)
        status = problem.status if problem.status < 500 else 400
        return _form(request, values, bucket, token, errors, status)
    return render(
        request,
        "register_done.html",
        201,
        username=body["username"],
        user_id=(created or {}).get("user_id"),
        login=login_link(body["email"] or "", bucket, token),
        invitation=bool(bucket),
    )


@router.post("/invitations/{bucket_id}/accept")
async def accept_invitation(request: Request, bucket_id: str) -> Response:
    """The invitation by e-mail becomes this account's share (the API checks the address and
    the token of the mail's link)."""
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    token = form.get("token", "")
    try:
        bucket = await api_of(request).call(
            session,
            "POST",
            f"/api/shares/{quote(bucket_id)}/accept-invitation",
            json={"token": token},
        )
    except ApiProblem as problem:
        return render(
            request,
            "invitation.html",
            problem.status if problem.status < 500 else 400,
            email=form.get("email", ""),
            bucket=bucket_id,
            token=token,
            me=session.user,
            error=problem.detail,
        )
    flash(request, "invitation.accepted")
    uids = (bucket or {}).get("study_uids") or []
    if len(uids) == 1:
        await _settled(request, uids[0])
        return redirect(f"/studies/{quote(uids[0])}?bucket={quote(bucket_id)}")
    return redirect("/studies")  # several studies: the list shows them all


async def _settled(request: Request, uid: str) -> None:
    """The study store learns of the acceptance from the share service's event (relay,
    broker, its worker): wait for its access decision a little, rather than open the study
    page on a refusal (the API decides; the page only waits for it)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + SETTLE_S
    while True:
        try:
            await api_of(request).call(request.state.session, "GET", f"/api/studies/{quote(uid)}")
            return
        except ApiProblem:
            if loop.time() + SETTLE_POLL_S > until:
                return
            await asyncio.sleep(SETTLE_POLL_S)
