"""My profile: language, contact data, password, mobile number (with the SMS code sent to the
new number) and the authenticator app (TOTP enrolment with a QR code drawn here as SVG)."""

from __future__ import annotations

import io
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from studyshare.portal import i18n
from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.fields import field_errors
from studyshare.portal.pages import eid
from studyshare.portal.security import read_form
from studyshare.portal.sessions import Session
from studyshare.portal.web import (
    api_of,
    checked,
    flash,
    language_of,
    redirect,
    render,
    require_login,
)

router = APIRouter(include_in_schema=False)

#: the forms of the profile page, each with the fields a rule of the API concerns
PASSWORD_RULES = {"InvalidCredentials": "current_password", "WeakPassword": "new_password"}
CONTACT_RULES = {
    "CurrentPasswordRequired": "contact_password",
    "InvalidCredentials": "contact_password",
}
TOTP_RULES = {
    "CurrentPasswordRequired": "totp_password",
    "InvalidCredentials": "totp_password",
}
EID_RULES = {"CurrentPasswordRequired": "eid_password", "InvalidCredentials": "eid_password"}
MOBILE_RULES = {
    "CurrentPasswordRequired": "mobile_password",
    "InvalidCredentials": "mobile_password",
    "MobileChangeRequestedTooOften": "mobile",
}


def qr_svg(data: str) -> Markup:
    """`data` as a QR code, an inline SVG without style attributes (the CSP allows none)."""
    out = io.BytesIO()
    segno.make(data, error="m").save(
        out,
        kind="svg",
        xmldecl=False,
        scale=5,
        border=4,
        svgclass="qr",
        lineclass="qr-line",
        omitsize=True,  # a viewBox: the stylesheet sizes it without cropping
    )
    return Markup(out.getvalue().decode())  # noqa: S704 - segno's own SVG, no user markup


@router.get("/profile")
async def profile(request: Request) -> Response:
    session = require_login(request)
    if session.patient:
        return redirect("/")
    return await _page(request, session)


async def _page(
    request: Request,
    session: Session,
    errors: dict[str, str] | None = None,
    status: int = 200,
    values: dict[str, Any] | None = None,
) -> Response:
    me = await api_of(request).call(session, "GET", "/api/users/me")
    session.user = me or {}
    enrolment = session.pending.get("totp_enrolment")
    return render(
        request,
        "profile.html",
        status,
        me=session.user,
        errors=errors or {},
        values=values or {},
        enrolment=enrolment,
        qr=qr_svg(enrolment["otpauth_uri"]) if enrolment else None,
        mobile_change=session.pending.get("mobile_change"),
        providers=await eid.providers(request),
    )


async def _act(
    request: Request,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    done: str | None,
    rules: dict[str, str] | None = None,
    default: str = "form",
    values: dict[str, Any] | None = None,
    fields: dict[str, str] | None = None,
) -> tuple[Any, Response | None]:
    """Call the API for a profile form: its answer, or the page again with the refusal
    beside the field it concerns."""
    session = await checked(request)
    require_login(request)
    if session.patient:
        return None, redirect("/")
    try:
        answer = await api_of(request).call(session, method, path, json=body)
    except ApiProblem as problem:
        status = problem.status if 400 <= problem.status < 500 else 400
        errors = field_errors(problem, rules, default, fields)
        return None, await _page(request, session, errors, status, values)
    if done:
        flash(request, done)
    return answer, None


@router.post("/profile/language")
async def language(request: Request) -> Response:
    form = await read_form(request)
    chosen = i18n.supported(form.get("language"))
    _, page = await _act(
        request,
        "PATCH",
        "/api/users/me",
        {"language": chosen or form.get("language", "")},
        "profile.saved",
        default="language",
    )
    if page is None and chosen:
        request.state.session.language = chosen
    return page or redirect("/profile")


@router.post("/profile/contact")
async def contact(request: Request) -> Response:
    """Names and e-mail need the current password (the API says so when it is missing);
    whether e-mail and mobile are public does not."""
    form = await read_form(request)
    me = request.state.session.user
    body: dict[str, Any] = {
        "email_public": form.get("email_public") == "on",
        "mobile_public": form.get("mobile_public") == "on",
    }
    for name in ("first_name", "last_name", "email"):
        value = form.get(name, "").strip()
        if value and value != (me.get(name) or ""):
            body[name] = value
    if form.get("current_password"):
        body["current_password"] = form["current_password"]
    _, page = await _act(
        request,
        "PATCH",
        "/api/users/me",
        body,
        "profile.saved",
        CONTACT_RULES,
        "contact",
        values={k: form.get(k, "") for k in ("first_name", "last_name", "email")},
        fields={
            **{k: k for k in ("first_name", "last_name", "email")},
            "current_password": "contact_password",
        },
    )
    return page or redirect("/profile")


@router.post("/profile/password")
async def password(request: Request) -> Response:
    form = await read_form(request)
    if form.get("new_password") != form.get("new_password_again"):
        session = await checked(request)
        t = i18n.translator(language_of(request))
        return await _page(request, session, {"new_password_again": t("profile.mismatch")}, 422)
    _, page = await _act(
        request,
        "POST",
        "/api/users/me/password",
        {
            "current_password": form.get("current_password", ""),
            "new_password": form.get("new_password", ""),
        },
        "profile.password_changed",
        PASSWORD_RULES,
        "new_password",
        fields={"current_password": "current_password", "new_password": "new_password"},
    )
    return page or redirect("/profile")


@router.post("/profile/mobile")
async def mobile(request: Request) -> Response:
    """A new mobile number: the API texts a code to it, entered below."""
    form = await read_form(request)
    number = form.get("mobile", "").strip()
    answer, page = await _act(
        request,
        "POST",
        "/api/users/me/mobile",
        {"mobile": number, "current_password": form.get("current_password") or None},
        "profile.mobile_code_sent",
        MOBILE_RULES,
        "mobile",
        values={"mobile": number},
        fields={"mobile": "mobile", "current_password": "mobile_password"},
    )
    if page is not None:
        return page
    request.state.session.pending["mobile_change"] = {
        "mobile": number,
        "expires_at": (answer or {}).get("expires_at"),
    }
    return redirect("/profile#mobile")


@router.post("/profile/mobile/confirm")
async def mobile_confirm(request: Request) -> Response:
    form = await read_form(request)
    _, page = await _act(
        request,
        "POST",
        "/api/users/me/mobile/confirm",
        {"code": form.get("code", "").strip()},
        "profile.mobile_changed",
        {"WrongMobileChangeCode": "mobile_code"},
        "mobile_code",
        fields={},
    )
    if page is None:
        request.state.session.pending.pop("mobile_change", None)
    return page or redirect("/profile#mobile")


@router.post("/profile/totp")
async def totp_start(request: Request) -> Response:
    """A new secret from the API (for the current password): shown as a QR code and in text
    until it is confirmed."""
    form = await read_form(request)
    answer, page = await _act(
        request,
        "POST",
        "/api/users/me/totp",
        {"current_password": form.get("current_password") or None},
        "profile.totp_scan",
        TOTP_RULES,
        "totp",
        fields={"current_password": "totp_password"},
    )
    if page is not None:
        return page
    request.state.session.pending["totp_enrolment"] = {
        "secret": answer["secret"],
        "otpauth_uri": answer["otpauth_uri"],
    }
    return redirect("/profile#totp")


@router.post("/profile/totp/confirm")
async def totp_confirm(request: Request) -> Response:
    form = await read_form(request)
    _, page = await _act(
        request,
        "POST",
        "/api/users/me/totp/confirm",
        {"code": form.get("code", "").strip()},
        "profile.totp_enabled",
        {"InvalidTOTPCode": "totp_code"},
        "totp_code",
        fields={},
    )
    if page is None:
        request.state.session.pending.pop("totp_enrolment", None)
    return page or redirect("/profile#totp")


@router.post("/login/eid/{provider}/link")
async def link_identity(request: Request, provider: str) -> Response:
    """To the provider, to link its identity to the account: the profile's form, with the
    current password (a linked identity is a second way in, which a later password change
    leaves in place) and the session's CSRF token (a link once started it: a page or a mail
    could have a logged-in user link the identity their browser was signed in with at the
    provider, an attacker's on a shared workstation)."""
    form = await read_form(request)
    body = {
        "redirect_uri": eid.callback_url(request, provider),
        "current_password": form.get("current_password", ""),
    }
    started, page = await _act(
        request,
        "POST",
        eid.link_start_path(provider),
        body,
        None,
        EID_RULES,
        "eid",
        fields={"current_password": "eid_password"},
    )
    return page or eid.to_provider(request, provider, started, "link", "/profile")
