"""Logging in (password and TOTP; patient with reference number), out, and the language."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from studyshare.portal import i18n
from studyshare.portal.adapters.public_api import ApiProblem, SessionEnded
from studyshare.portal.pages import eid, groups
from studyshare.portal.security import read_form, safe_next
from studyshare.portal.sessions import Session
from studyshare.portal.web import api_of, checked, redirect, render, session_of

router = APIRouter(include_in_schema=False)

#: "Remember my chosen environment" (manual, L18): the code of the environment chosen, a
#: preference only (no personal data), kept a year; sent to this portal only.
ENV_COOKIE = "studyshare_environment"
ENV_COOKIE_MAX_AGE = 365 * 24 * 3600


async def _environments(request: Request) -> dict[str, Any]:
    """This deployment's environment and the portals of all (`GET /api/auth/environments`)."""
    try:
        return await api_of(request).anonymous("GET", "/api/auth/environments") or {}
    except ApiProblem:
        return {}


@router.get("/")
async def home(request: Request) -> Response:
    session = session_of(request)
    if not session.logged_in:
        return redirect("/login")
    if session.patient:
        return redirect(f"/studies/{session.user.get('study_uid', '')}")
    return redirect("/studies")


@router.get("/login")
async def login_page(request: Request, next: str | None = None, stay: str = "") -> Response:
    session = session_of(request)
    target = safe_next(next)
    if session.logged_in and not session.patient:
        return redirect(target)
    envs = await _environments(request)
    portals = {e["code"]: e["portal_url"] for e in envs.get("environments", [])}
    chosen = request.cookies.get(ENV_COOKIE)
    if chosen and chosen != envs.get("current") and portals.get(chosen) and not stay:
        return RedirectResponse(portals[chosen], status_code=303)  # the remembered choice
    return render(
        request,
        "login.html",
        next=target,
        asked=bool(next),
        form={},
        error=None,
        providers=await eid.providers(request),
        environments=envs,
    )


@router.post("/login/environment")
async def login_environment(request: Request) -> Response:
    """Before the password: the environment the username belongs to, offered when it is not
    this one. The API answers the same for an unknown username as for one of this
    environment, so the page (empty then) tells nothing about existence."""
    await checked(request)
    form = await read_form(request)
    username = form.get("username", "").strip()
    if not username:
        return HTMLResponse("")
    try:
        offered = await api_of(request).anonymous(
            "POST", "/api/auth/environment", json={"username": username[:200]}
        )
    except ApiProblem:
        return HTMLResponse("")
    if offered.get("current") or not offered.get("portal_url"):
        return HTMLResponse("")
    return render(request, "partials/environment_offer.html", offered=offered)


@router.get("/environment")
async def choose_environment(request: Request, code: str = "", remember: str = "") -> Response:
    """The environment menu: go to the chosen environment's portal (this one: the login page),
    remembering the choice in a cookie when asked (and forgetting it when not)."""
    envs = await _environments(request)
    portals = {e["code"]: e["portal_url"] for e in envs.get("environments", [])}
    here = code == envs.get("current")
    if not here and code not in portals:
        return redirect("/login")
    response: Response = (
        redirect("/login?stay=1") if here else RedirectResponse(portals[code], status_code=303)
    )
    if remember:
        response.set_cookie(
            ENV_COOKIE,
            code,
            max_age=ENV_COOKIE_MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=request.app.state.portal_settings.secure_cookies,
            path="/",
        )
    else:
        response.delete_cookie(ENV_COOKIE, path="/")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    session = await checked(request)
    form = await read_form(request)
    target = safe_next(form.get("next"))
    body: dict[str, Any] = {
        "username": form.get("username", "").strip(),
        "password": form.get("password", ""),
    }
    if form.get("otp", "").strip():
        body["otp"] = form["otp"].strip()
    try:
        tokens = await api_of(request).anonymous("POST", "/api/auth/login", json=body)
    except ApiProblem as problem:
        totp = problem.rule in ("TOTPRequired", "InvalidTOTPCode") or "otp" in body
        elsewhere = problem.rule == "WrongEnvironment"  # the account lives in another country
        return render(
            request,
            "login.html",
            problem.status if problem.status >= 400 else 400,
            next=target,
            asked=False,
            form={"username": body["username"], "totp": totp},
            error=None if elsewhere else problem.detail,  # the page says it in its language
            portal_url=problem.body.get("portal_url") if elsewhere else None,
            environment=problem.body.get("environment"),
            providers=await eid.providers(request),
        )
    return await signed_in(request, session, tokens, target)


async def signed_in(
    request: Request, session: Session, tokens: dict[str, Any], target: str
) -> Response:
    """A new session id for the logged-in user, their profile, then `target`, by way of the
    group membership confirmation while one is due (every three months)."""
    request.app.state.sessions.rotate(session)
    session.sign_in(tokens)
    await _load_user(request)
    due = tokens.get("group_confirmations_due")  # the login answer says (issue 16, point 5)
    if due if due is not None else await groups.due_confirmations(request, session):
        return redirect(f"/group-confirmations?next={quote(target, safe='')}")
    return redirect(target)


async def _load_user(request: Request) -> None:
    """`GET /api/users/me`: the name in the header and the user's language."""
    session = session_of(request)
    try:
        me = await api_of(request).call(session, "GET", "/api/users/me")
    except (ApiProblem, SessionEnded):
        return
    session.user = me or {}
    session.language = i18n.supported(session.user.get("language")) or session.language


@router.get("/patient-login")
async def patient_login_page(request: Request) -> Response:
    return render(request, "patient_login.html", form={}, error=None)


@router.post("/patient-login")
async def patient_login(request: Request) -> Response:
    session = await checked(request)
    form = await read_form(request)
    body: dict[str, Any] = {
        "reference_number": form.get("reference_number", "").strip(),
        "date_of_birth": form.get("date_of_birth", "").strip(),
    }
    for field in ("pincode", "otp"):
        if form.get(field, "").strip():
            body[field] = form[field].strip()
    try:
        tokens = await api_of(request).anonymous("POST", "/api/auth/patient-login", json=body)
    except ApiProblem as problem:
        shown = {
            "reference_number": body["reference_number"],
            "date_of_birth": body["date_of_birth"],
            "pincode": problem.rule == "PincodeRequired" or "pincode" in body,
            "otp": problem.rule in ("PatientOTPRequired",) or "otp" in body,
        }
        return render(
            request,
            "patient_login.html",
            problem.status,
            form=shown,
            error=None
            if problem.rule in ("PincodeRequired", "PatientOTPRequired")
            else problem.detail,
            rule=problem.rule,
        )
    request.app.state.sessions.rotate(session)
    session.sign_in(tokens, patient=True)
    session.user = {"study_uid": tokens.get("study_uid")}
    return redirect(f"/studies/{tokens.get('study_uid', '')}")


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await checked(request)
    await api_of(request).logout(session)
    language, patient = session.language, session.patient
    request.app.state.sessions.drop(session)
    fresh = request.app.state.sessions.new()
    fresh.language = language
    request.state.session = fresh
    return redirect("/patient-login" if patient else "/login")  # where they came in


@router.post("/language")
async def switch_language(request: Request) -> Response:
    """The switcher: this session's language, and the user's own when logged in."""
    session = await checked(request)
    form = await read_form(request)
    language = i18n.supported(form.get("language"))
    if language:
        session.language = language
        if session.logged_in and not session.patient:
            try:
                await api_of(request).call(
                    session, "PATCH", "/api/users/me", json={"language": language}
                )
            except ApiProblem:
                pass  # the page still switches; the profile keeps its language
    return redirect(safe_next(form.get("next"), "/"))
