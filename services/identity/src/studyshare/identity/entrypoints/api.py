"""Identity's HTTP API: logins and tokens, accounts, recipients, groups, departments."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from studyshare.contracts.routes import internal_callers
from studyshare.contracts.tokens import AccessClaims
from studyshare.identity.adapters.eid import DemoEid
from studyshare.identity.domain.department import Policy
from studyshare.identity.domain.exceptions import (
    SearchCriteriaMissing,
    TOTPRequired,
    UnknownIdentityProvider,
    UserNotFound,
    WrongEnvironment,
)
from studyshare.identity.domain.user import Registration
from studyshare.identity.entrypoints import models as m
from studyshare.identity.entrypoints.errors import STATUS
from studyshare.identity.service_layer import accounts, auth, departments, groups, patients
from studyshare.identity.service_layer.context import Identity
from studyshare.identity.service_layer.recipients import RecipientKind, search
from studyshare.identity.service_layer.recipients import browse as browse_recipients
from studyshare.identity.settings import IdentitySettings
from studyshare.plumbing.access_barrier import AccessBarrierClient
from studyshare.plumbing.auth import (
    JWKSVerifier,
    SessionEnded,
    current_principal,
    optional_principal,
)
from studyshare.plumbing.client_address import forwarded_address, vouched_address
from studyshare.plumbing.errors import Unauthorized
from studyshare.plumbing.followers import JOINING
from studyshare.plumbing.http import create_app as plumbing_app
from studyshare.plumbing.http import kafka_ready, mongo_ready, problem_responses, refused
from studyshare.plumbing.internal import internal_caller
from studyshare.plumbing.mongo import mongo_client


def get_identity(request: Request) -> Identity:
    return request.app.state.identity


IdentityDep = Annotated[Identity, Depends(get_identity)]


def client_ip(request: Request) -> str | None:
    """The caller's address: the browser's when the portal vouches for it
    (`plumbing.client_address`), else as the proxies saw it (`forwarded_address`)."""
    settings = request.app.state.identity.settings
    browser = vouched_address(settings.portal_client_secret, request.headers, time.time())
    return browser or forwarded_address(
        request.headers.get("x-forwarded-for", ""),
        request.client.host if request.client else None,
        settings.trusted_proxies,
    )


ClientIP = Annotated[str | None, Depends(client_ip)]


async def live_principal(
    request: Request,
    app: IdentityDep,
    principal: Annotated[AccessClaims, Depends(current_principal)],
) -> AccessClaims:
    if (reason := await auth.session_ended(app, principal)) is not None:
        raise SessionEnded(f"{reason}; this access token no longer works, log in again")
    return principal


async def live_user(principal: Annotated[AccessClaims, Depends(live_principal)]) -> AccessClaims:
    if principal.kind != "user":
        raise Unauthorized("this is only for registered users")
    return principal


Principal = Annotated[AccessClaims, Depends(live_user)]
MaybePrincipal = Annotated[AccessClaims | None, Depends(optional_principal)]

#: commands ending sessions: every API process has the end before the answer (issue 15, 13)
SESSION_END = (
    "Answers once every API process of the other services has the end, so the ended token's "
    "next request is refused everywhere (401 `SessionEnded`): header "
    "`StudyShare-Propagated: true` (`false`: not confirmed in time; the end is stored)."
)

auth_router = APIRouter(tags=["auth"])
users_router = APIRouter(tags=["users"])
groups_router = APIRouter(tags=["groups"])
departments_router = APIRouter(tags=["departments"])


def _tokens(pair: auth.TokenPair) -> m.TokenResponse:
    return m.TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        token_type=pair.token_type,
    )


# --- auth -------------------------------------------------------------------------------------


@auth_router.post(
    "/api/auth/login",
    response_model=m.TokenResponse,
    responses=problem_responses(400, 401, 403, 421, 422, 429),
    summary="Log in with username, password (and TOTP code when enabled)",
)
async def login(body: m.LoginRequest, app: IdentityDep, ip: ClientIP) -> m.TokenResponse:
    """The answer says which group confirmations are due (the manual asks for them at login)."""
    pair = await auth.login(app, body.username, body.password, body.otp, ip)
    answer = _tokens(pair)
    answer.group_confirmations_due = await groups.due_group_ids(app, pair.user_id)
    return answer


@auth_router.post(
    "/api/auth/refresh",
    response_model=m.TokenResponse,
    responses=problem_responses(400, 401, 422),
    summary="Exchange a refresh token for new tokens (the old one is spent)",
)
async def refresh(body: m.RefreshRequest, app: IdentityDep, ip: ClientIP) -> m.TokenResponse:
    return _tokens(await auth.refresh(app, body.refresh_token, ip))


@auth_router.post(
    "/api/auth/logout",
    status_code=204,
    responses=problem_responses(400, 401, 422),
    summary="End the session of the bearer token and/or the refresh token",
    description=SESSION_END,
)
async def logout(
    app: IdentityDep, ip: ClientIP, principal: MaybePrincipal, body: m.LogoutRequest | None = None
) -> Response:
    await auth.logout(app, principal, body.refresh_token if body else None, ip)
    return Response(status_code=204)


@auth_router.post(
    "/api/auth/patient-login",
    response_model=m.PatientTokenResponse,
    responses=problem_responses(400, 401, 402, 403, 422, 429),
    summary="Patient login: reference number + date of birth (+ pincode, + SMS code)",
)
async def patient_login(
    body: m.PatientLoginRequest, app: IdentityDep, ip: ClientIP
) -> m.PatientTokenResponse:
    token = await patients.patient_login(
        app, body.reference_number, body.date_of_birth, body.pincode, body.otp, ip
    )
    return m.PatientTokenResponse(
        access_token=token.access_token,
        expires_in=token.expires_in,
        expires_at=token.expires_at,
        study_uid=token.study_uid,
    )


@auth_router.get(
    "/api/auth/environments",
    response_model=m.EnvironmentsResponse,
    summary="This deployment's environment and the portals of the others",
)
async def environments(app: IdentityDep) -> m.EnvironmentsResponse:
    return m.EnvironmentsResponse(
        current=app.settings.environment_code,
        environments=[
            m.Portal(code=code, portal_url=url) for code, url in app.settings.portal_table.items()
        ],
    )


@auth_router.post(
    "/api/auth/environment",
    response_model=m.OfferedEnvironment,
    responses=problem_responses(422),
    summary="The environment (country portal) to offer a username, before the password",
    description=(
        "Reveals nothing about existence: an unknown username, a pending or deactivated "
        "account and an active account of this environment get the same answer (this "
        "environment), in the same shape, after the same single indexed read. Only an active "
        "account of another environment gets its portal (the manual's redirect). POST keeps "
        "usernames out of URLs and access logs."
    ),
)
async def offered_environment(body: m.EnvironmentQuery, app: IdentityDep) -> m.OfferedEnvironment:
    return m.OfferedEnvironment(**await auth.offered_environment(app, body.username))


@auth_router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(app: IdentityDep, response: Response) -> dict[str, Any]:
    response.headers["cache-control"] = "public, max-age=300"
    return app.jwks()


@auth_router.get(
    "/api/auth/external",
    response_model=m.ExternalProviders,
    summary="The external identity providers (eID) one can log in with",
)
async def external_providers(request: Request) -> m.ExternalProviders:
    providers = getattr(request.app.state, "identity_providers", {})
    return m.ExternalProviders(
        providers=[
            m.ExternalProvider(name=name, label=getattr(p, "label", None) or name)
            for name, p in sorted(providers.items())
        ]
    )


def _provider(request: Request, name: str):
    providers = getattr(request.app.state, "identity_providers", {})
    if name not in providers:
        raise UnknownIdentityProvider(f"no external identity provider {name!r} is configured")
    return providers[name]


@auth_router.get(
    "/api/auth/external/{provider}/start",
    response_model=m.AuthorizationStart,
    responses=problem_responses(404, 422),
    summary="Start a login at an external identity provider (eID)",
)
async def external_start(
    provider: str,
    request: Request,
    app: IdentityDep,
    redirect_uri: Annotated[str, Query(max_length=2048)],
) -> m.AuthorizationStart:
    """The `state` comes back on the callback, which refuses any other (single use, expiring);
    it is good for a login only (linking starts at `.../link/start`)."""
    url, state = await auth.start_external_login(app, _provider(request, provider), redirect_uri)
    return m.AuthorizationStart(authorization_url=url, state=state)


@auth_router.post(
    "/api/auth/external/{provider}/link/start",
    response_model=m.AuthorizationStart,
    responses=problem_responses(401, 403, 404, 422, 429),
    summary="Start a login at an external identity provider to link its identity to the "
    "logged-in account (with the current password)",
)
async def external_link_start(
    provider: str,
    body: m.ExternalLinkStart,
    request: Request,
    app: IdentityDep,
    principal: Principal,
    ip: ClientIP,
) -> m.AuthorizationStart:
    """The `state` is bound to the caller: `.../link` takes no other. A linked identity is a
    second way into the account, so the account holder proves it with the current password
    (throttled like a login), not a token or an unattended session alone."""
    url, state = await accounts.start_linking(
        app, _provider(request, provider), body.redirect_uri, principal, body.current_password, ip
    )
    return m.AuthorizationStart(authorization_url=url, state=state)


@auth_router.get(
    "/api/auth/external/{provider}/callback",
    response_model=m.TokenResponse,
    responses=problem_responses(400, 401, 404, 422),
    summary="Finish an external login (its `state` checked); the identity must be linked to an"
    " account; an account with TOTP answers 401 TOTPRequired with a `login_ticket`",
)
async def external_callback(
    provider: str, request: Request, app: IdentityDep, ip: ClientIP
) -> m.TokenResponse:
    chosen = _provider(request, provider)
    params = dict(request.query_params)
    return _tokens(await auth.login_with_external_identity(app, chosen, params, ip))


@auth_router.post(
    "/api/auth/external/{provider}/totp",
    response_model=m.TokenResponse,
    responses=problem_responses(400, 401, 404, 422, 429),
    summary="Finish an external login of an account with TOTP: its `login_ticket` and the code",
)
async def external_totp(
    provider: str, body: m.ExternalTOTP, request: Request, app: IdentityDep, ip: ClientIP
) -> m.TokenResponse:
    chosen = _provider(request, provider)
    return _tokens(
        await auth.finish_external_login_with_totp(app, chosen, body.login_ticket, body.otp, ip)
    )


@auth_router.post(
    "/api/auth/external/{provider}/link",
    status_code=204,
    responses=problem_responses(400, 401, 404, 422),
    summary="Link an external identity to the logged-in account",
)
async def external_link(
    provider: str,
    request: Request,
    app: IdentityDep,
    principal: Principal,
    ip: ClientIP,
    params: dict[str, str],
) -> Response:
    await auth.link_external_identity(app, _provider(request, provider), params, principal, ip)
    return Response(status_code=204)


demo_eid_router = APIRouter(tags=["auth"], include_in_schema=False)

DEMO_EID_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Demo eID</title></head>
<body><main><h1>Demo eID</h1>
<p>A stand-in for the electronic identity card, for development and tests only.</p>
<form method="post" action="/api/auth/external/demo-eid/authorize">
<input type="hidden" name="state" value="{state}">
<input type="hidden" name="redirect_uri" value="{redirect_uri}">
<label>National register number <input name="national_number" id="national-number" required></label>
<button type="submit" id="demo-eid-sign-in">Sign in with the demo eID</button>
</form></main></body></html>"""


def _demo_eid(request: Request) -> DemoEid:
    provider = getattr(request.app.state, "identity_providers", {}).get(DemoEid.name)
    if not isinstance(provider, DemoEid):
        raise UnknownIdentityProvider("the demo eID is not offered here")
    return provider


@demo_eid_router.get("/api/auth/external/demo-eid/authorize")
async def demo_eid_page(
    request: Request,
    state: Annotated[str, Query(max_length=200)],
    redirect_uri: Annotated[str, Query(max_length=2048)],
) -> Response:
    """The demo provider's own page (a real provider's lives elsewhere)."""
    if not _demo_eid(request).allows(redirect_uri):
        raise UnknownIdentityProvider("the demo eID returns only to this platform's portal")
    page = DEMO_EID_PAGE.format(state=escape(state), redirect_uri=escape(redirect_uri))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@demo_eid_router.post("/api/auth/external/demo-eid/authorize")
async def demo_eid_sign_in(request: Request) -> Response:
    form = parse_qs((await request.body()).decode(errors="replace"))
    state, redirect_uri, number = (
        (form.get(k) or [""])[0] for k in ("state", "redirect_uri", "national_number")
    )
    provider = _demo_eid(request)
    if not provider.allows(redirect_uri) or not number.strip():
        raise UnknownIdentityProvider("the demo eID returns only to this platform's portal")
    query = urlencode(provider.answer(state, number))
    return RedirectResponse(f"{redirect_uri}?{query}", status_code=303)


# --- users ------------------------------------------------------------------------------------


def _registration(body: m.SelfRegistration, app: Identity, **extra: Any) -> Registration:
    return Registration(
        username=body.username,
        first_name=body.first_name,
        last_name=body.last_name,
        email=body.email,
        email_public=body.email_public,
        mobile=body.mobile,
        mobile_public=body.mobile_public,
        language=body.language,
        environment=body.environment or app.settings.environment_code,
        profession=body.profession,
        physician_numbers=m.physician_numbers(body.physician_numbers),
        **extra,
    )


@users_router.post(
    "/api/users",
    status_code=201,
    response_model=m.UserCreated,
    responses=problem_responses(400, 401, 403, 409, 422),
    summary="Register a user (department admin or service desk)",
)
async def register_user(
    body: m.AdminRegistration, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.UserCreated:
    reg = _registration(
        body,
        app,
        roles=tuple(body.roles),
        department_ids=tuple(body.department_ids),
        admin_of=tuple(body.admin_of),
    )
    user_id = await accounts.register_by_admin(app, reg, body.password, principal, ip)
    return m.UserCreated(id=user_id, user_id=user_id, status="active")


@users_router.post(
    "/api/users/register",
    status_code=201,
    response_model=m.UserCreated,
    responses=problem_responses(400, 409, 422, 429),
    summary="Self-registration; the account waits for the service desk's approval (a source "
    "registers `registrations_per_source` accounts an hour, else 429 `RegistrationsTooOften`)",
)
async def self_register(body: m.SelfRegistration, app: IdentityDep, ip: ClientIP) -> m.UserCreated:
    user_id = await accounts.self_register(app, _registration(body, app), body.password, ip)
    return m.UserCreated(id=user_id, user_id=user_id, status="pending")


@users_router.post(
    "/api/users/{user_id}/approve",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409),
    summary="Approve a self-registered account (service desk)",
)
async def approve(user_id: str, app: IdentityDep, principal: Principal, ip: ClientIP) -> Response:
    await accounts.approve(app, user_id, principal, ip)
    return Response(status_code=204)


def _full_view(doc: dict[str, Any]) -> m.UserView:
    return m.UserView(
        user_id=doc["_id"],
        **{k: v for k, v in doc.items() if k in m.UserView.model_fields and k != "user_id"},
    )


def _public_view(doc: dict[str, Any]) -> m.UserView:
    """What anyone may know of a user: the recipient search's public contact data. Account,
    roles and department memberships are for those who administer the user."""
    view = _full_view(doc)
    return view.model_copy(
        update={
            "username": None,
            "email": view.email if view.email_public else None,
            "mobile": view.mobile if view.mobile_public else None,
            "roles": [],
            "department_ids": [],
            "admin_of": [],
            "status": None,
            "totp_enabled": None,
        }
    )


def administers_user(principal: AccessClaims, doc: dict[str, Any]) -> bool:
    """The user themselves, the service desk, or an admin of one of the user's departments."""
    return (
        principal.sub == doc["_id"]
        or principal.has_role("service_desk")
        or bool(set(doc.get("department_ids") or ()) & set(principal.admin_of))
    )


@users_router.get("/api/users/me", response_model=m.UserView, responses=problem_responses(401, 404))
async def me(app: IdentityDep, principal: Principal) -> m.UserView:
    return _full_view(await accounts.user_doc(app, principal.sub))


@users_router.patch(
    "/api/users/me",
    response_model=m.UserView,
    responses=problem_responses(400, 401, 403, 404, 422, 429),
    summary="Change one's profile; names, e-mail and physician numbers need current_password",
)
async def patch_me(
    body: m.ProfilePatch, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.UserView:
    changes = body.model_dump(exclude_unset=True, exclude_none=True, exclude={"current_password"})
    if "physician_numbers" in changes:
        changes["physician_numbers"] = m.physician_numbers(body.physician_numbers)
    await accounts.change_profile(app, principal.sub, changes, principal, ip, body.current_password)
    return _full_view(await accounts.user_doc(app, principal.sub))


@users_router.post(
    "/api/users/me/mobile",
    status_code=202,
    response_model=m.MobileChangeRequested,
    responses=problem_responses(401, 403, 422, 429),
    summary="Change the mobile number: the current password, then a code is sent to the new "
    "number (confirm it with /api/users/me/mobile/confirm)",
)
async def request_mobile_change(
    body: m.MobileChange, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.MobileChangeRequested:
    expires_at = await accounts.request_mobile_change(
        app, principal, body.mobile, body.current_password, ip
    )
    return m.MobileChangeRequested(expires_at=expires_at)


@users_router.post(
    "/api/users/me/mobile/confirm",
    response_model=m.UserView,
    responses=problem_responses(401, 403, 404, 422),
    summary="Enter the code sent to the new mobile number; the previous number is told",
)
async def confirm_mobile_change(
    body: m.MobileChangeConfirm, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.UserView:
    await accounts.confirm_mobile_change(app, principal, body.code, ip)
    return _full_view(await accounts.user_doc(app, principal.sub))


@users_router.post(
    "/api/users/me/password",
    status_code=204,
    responses=problem_responses(400, 401, 422, 429),
    summary="Change the password (the current one is required)",
)
async def change_password(
    body: m.PasswordChange, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await accounts.change_password(app, principal, body.current_password, body.new_password, ip)
    return Response(status_code=204)


@users_router.post(
    "/api/users/me/totp",
    response_model=m.TOTPEnrolment,
    responses=problem_responses(401, 403, 409, 422, 429),
    summary="Start TOTP enrolment (with the current password): a secret and its otpauth URI",
)
async def totp_begin(
    app: IdentityDep, principal: Principal, ip: ClientIP, body: m.TOTPBegin | None = None
) -> m.TOTPEnrolment:
    current = body.current_password if body is not None else None
    secret, uri = await accounts.begin_totp(app, principal, current, ip)
    return m.TOTPEnrolment(secret=secret, otpauth_uri=uri)


@users_router.post(
    "/api/users/me/totp/confirm",
    status_code=204,
    responses=problem_responses(400, 401, 403, 409, 422),
    summary="Confirm TOTP enrolment with a code from the authenticator",
)
async def totp_confirm(
    body: m.TOTPConfirm, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await accounts.confirm_totp(app, principal, body.code, ip)
    return Response(status_code=204)


@users_router.get(
    "/api/users/me/group-confirmations",
    response_model=list[m.GroupConfirmation],
    responses=problem_responses(401),
    summary="My groups, their composition, and whether confirmation is due",
)
async def my_group_confirmations(app: IdentityDep, principal: Principal) -> list[dict[str, Any]]:
    return await groups.confirmations(app, principal.sub)


@users_router.get(
    "/api/users/me/group-invitations",
    response_model=list[m.GroupInvitation],
    responses=problem_responses(401),
    summary="Groups I am invited to; accept or decline each",
)
async def my_group_invitations(app: IdentityDep, principal: Principal) -> list[dict[str, Any]]:
    return await groups.invitations(app, principal.sub)


@users_router.get(
    "/api/users/pending",
    response_model=list[m.UserView],
    responses=problem_responses(401, 403),
    summary="Self-registrations waiting for approval (service desk)",
)
async def pending_users(app: IdentityDep, principal: Principal) -> list[m.UserView]:
    return [_full_view(doc) for doc in await accounts.pending(app, principal)]


@users_router.get(
    "/api/users",
    response_model=m.AccountPage,
    responses=problem_responses(401, 403, 422),
    summary="Find accounts of any status by the start of the username or the e-mail address "
    "(service desk)",
)
async def search_accounts(
    app: IdentityDep, principal: Principal, q: Annotated[str, Query(min_length=1, max_length=254)]
) -> m.AccountPage:
    return m.AccountPage(items=[_full_view(d) for d in await accounts.search(app, principal, q)])


@users_router.get(
    "/api/users/locked",
    response_model=list[m.LockedAccount],
    responses=problem_responses(401, 403),
    summary="Accounts locked now after failed logins (service desk)",
)
async def locked_accounts(app: IdentityDep, principal: Principal) -> list[m.LockedAccount]:
    return [
        m.LockedAccount(
            **_full_view(doc).model_dump(),
            locked_until=doc["locked_until"],
            failures=doc["failures"],
        )
        for doc in await accounts.locked(app, principal)
    ]


@users_router.get(
    "/api/users/{user_id}", response_model=m.UserView, responses=problem_responses(401, 404)
)
async def get_user(user_id: str, app: IdentityDep, principal: Principal) -> m.UserView:
    doc = await accounts.user_doc(app, user_id)
    if administers_user(principal, doc):
        return _full_view(doc)
    if doc["status"] != "active":
        raise UserNotFound(f"user {user_id} does not exist")
    return _public_view(doc)


@users_router.put(
    "/api/users/{user_id}/roles",
    response_model=m.UserView,
    responses=problem_responses(400, 401, 403, 404, 422),
    summary="Set roles and department memberships (service desk)",
)
async def set_roles(
    user_id: str, body: m.RolesUpdate, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.UserView:
    await accounts.set_roles(
        app,
        user_id,
        principal,
        ip,
        roles=tuple(body.roles) if body.roles is not None else None,
        department_ids=tuple(body.department_ids) if body.department_ids is not None else None,
        admin_of=tuple(body.admin_of) if body.admin_of is not None else None,
    )
    return _full_view(await accounts.user_doc(app, user_id))


@users_router.post(
    "/api/users/{user_id}/deactivate",
    status_code=204,
    responses=problem_responses(401, 403, 404),
    summary="Deactivate an account and end its sessions (service desk)",
    description=SESSION_END,
)
async def deactivate(
    user_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await accounts.deactivate(app, user_id, principal, ip)
    return Response(status_code=204)


@users_router.post(
    "/api/users/{user_id}/password",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 422),
    summary="Set a new password for a user and end their sessions (service desk)",
    description=SESSION_END,
)
async def reset_password(
    user_id: str, body: m.PasswordReset, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await accounts.reset_password(app, user_id, body.new_password, principal, ip)
    return Response(status_code=204)


@users_router.delete(
    "/api/users/{user_id}/totp",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409),
    summary="Remove a user's second factor, e.g. a lost phone (service desk)",
)
async def disable_totp(
    user_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await accounts.disable_totp(app, user_id, principal, ip)
    return Response(status_code=204)


@users_router.post(
    "/api/users/{user_id}/unlock",
    status_code=204,
    responses=problem_responses(401, 403, 404),
    summary="Lift a brute-force lock on the account (service desk)",
)
async def unlock(user_id: str, app: IdentityDep, principal: Principal, ip: ClientIP) -> Response:
    await accounts.unlock(app, user_id, principal, ip)
    return Response(status_code=204)


@users_router.get(
    "/api/recipients",
    response_model=m.RecipientPage,
    responses=problem_responses(400, 401, 422),
    summary="Find recipients: type-ahead (q), detailed search by field, or select from list",
    description=(
        "`q`: the type-ahead (names, physician numbers, public e-mail and mobile; exact matches "
        "first). The detailed search narrows by field: `first_name`, `last_name`, `name` (a "
        "group's or department's), `physician_number`, `registry` (of the physician number), "
        "`email` and `mobile` (public ones only), each a prefix, all together. `browse=true` "
        'is the manual\'s "select from list": every recipient of `kind` by name, paginated. '
        "Neither a query, a field nor `browse`: 422 `SearchCriteriaMissing`."
    ),
)
async def recipients(
    app: IdentityDep,
    principal: Principal,
    q: Annotated[str, Query(max_length=200)] = "",
    kind: RecipientKind | None = None,
    browse: bool = False,
    first_name: Annotated[str | None, Query(max_length=100)] = None,
    last_name: Annotated[str | None, Query(max_length=100)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    physician_number: Annotated[str | None, Query(max_length=50)] = None,
    registry: Annotated[str | None, Query(max_length=50)] = None,
    email: Annotated[str | None, Query(max_length=200)] = None,
    mobile: Annotated[str | None, Query(max_length=50)] = None,
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> m.RecipientPage:
    criteria = {
        "first_name": first_name,
        "last_name": last_name,
        "name": name,
        "physician_number": physician_number,
        "registry": registry,
        "email": email,
        "mobile": mobile,
    }
    searched = q.strip() or any((v or "").strip() for v in criteria.values())
    if searched:
        items, total = await search(app.db, q, kind, page, page_size, criteria)
    elif browse:
        items, total = await browse_recipients(app.db, kind, page, page_size)
    else:
        raise SearchCriteriaMissing(
            "give a query (q), a field of the detailed search, or browse=true"
        )
    return m.RecipientPage(
        items=[
            m.Recipient(id=d["_id"], **{k: v for k, v in d.items() if k != "_id"}) for d in items
        ],
        total=total,
        page=page,
        page_size=page_size,
    )


# --- groups -----------------------------------------------------------------------------------


@groups_router.post(
    "/api/groups",
    status_code=201,
    response_model=m.GroupCreated,
    responses=problem_responses(400, 401, 403, 404, 422),
    summary="Create a group practice",
)
async def create_group(
    body: m.GroupCreate, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.GroupCreated:
    group_id = await groups.create_group(
        app,
        principal,
        ip,
        name=body.name,
        primary_contact_id=body.primary_contact_id,
        admin_ids=body.admin_ids,
        member_ids=body.member_ids,
        email=body.email,
        language=body.language,
    )
    return m.GroupCreated(id=group_id, group_id=group_id)


@groups_router.get(
    "/api/groups/invitations",
    response_model=list[m.OpenInvitation],
    responses=problem_responses(401, 403),
    summary="Every open invitation to a group, oldest first (service desk)",
)
async def open_invitations(app: IdentityDep, principal: Principal) -> list[dict[str, Any]]:
    return await groups.open_invitations(app, principal)


@groups_router.get(
    "/api/groups/{group_id}", response_model=m.GroupView, responses=problem_responses(401, 404)
)
async def get_group(group_id: str, app: IdentityDep, principal: Principal) -> dict[str, Any]:
    """Members and the service desk only; admins and the service desk also see invitations."""
    return await groups.group_view(app, group_id, principal)


@groups_router.post(
    "/api/groups/{group_id}/members",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 409, 422),
    summary="Invite a member (group admin); the service desk adds one at once",
)
async def add_group_member(
    group_id: str, body: m.MemberAdd, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await groups.add_member(app, group_id, body.user_id, body.admin, principal, ip)
    return Response(status_code=204)


@groups_router.delete(
    "/api/groups/{group_id}/members/{user_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409),
    summary="Remove a member or withdraw an invitation (group admin, service desk); leave or"
    " decline (the user themselves)",
)
async def remove_group_member(
    group_id: str, user_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await groups.remove_member(app, group_id, user_id, principal, ip)
    return Response(status_code=204)


@groups_router.patch(
    "/api/groups/{group_id}/members/{user_id}",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 409, 422),
    summary="Make a member a group admin or not (group admin or service desk)",
)
async def set_group_admin(
    group_id: str,
    user_id: str,
    body: m.MemberRole,
    app: IdentityDep,
    principal: Principal,
    ip: ClientIP,
) -> Response:
    await groups.set_admin(app, group_id, user_id, body.admin, principal, ip)
    return Response(status_code=204)


@groups_router.put(
    "/api/groups/{group_id}/primary-contact",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 422),
    summary="Name another member the primary contact (group admin or service desk)",
)
async def set_primary_contact(
    group_id: str, body: m.UserRef, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await groups.set_primary_contact(app, group_id, body.user_id, principal, ip)
    return Response(status_code=204)


@groups_router.post(
    "/api/groups/{group_id}/accept-membership",
    status_code=204,
    responses=problem_responses(401, 404, 409),
    summary="Accept an invitation to the group: a member from now on",
)
async def accept_membership(
    group_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await groups.accept_membership(app, group_id, principal, ip)
    return Response(status_code=204)


@groups_router.post(
    "/api/groups/{group_id}/decline-membership",
    status_code=204,
    responses=problem_responses(401, 404, 409),
    summary="Decline an invitation to the group",
)
async def decline_membership(
    group_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await groups.decline_membership(app, group_id, principal, ip)
    return Response(status_code=204)


@groups_router.post(
    "/api/groups/{group_id}/members/{user_id}/approve",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409),
    summary="Accept an invitation on the invitee's behalf (service desk)",
)
async def approve_membership(
    group_id: str, user_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await groups.approve_membership(app, group_id, user_id, principal, ip)
    return Response(status_code=204)


@groups_router.post(
    "/api/groups/{group_id}/confirm-membership",
    response_model=m.ConfirmedResponse,
    responses=problem_responses(401, 404),
    summary="Confirm the group's composition (due every 3 months)",
)
async def confirm_membership(
    group_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.ConfirmedResponse:
    until = await groups.confirm_membership(app, group_id, principal, ip)
    return m.ConfirmedResponse(group_id=group_id, confirmed_until=until)


@groups_router.post(
    "/api/groups/{group_id}/report-composition",
    status_code=202,
    response_model=m.CompositionReported,
    responses=problem_responses(401, 404, 422),
    summary="Report a wrong composition to the group's admins (or the service desk)",
)
async def report_composition(
    group_id: str, body: m.CompositionReport, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.CompositionReported:
    told = await groups.report_composition(app, group_id, body.remark, principal, ip)
    return m.CompositionReported(group_id=group_id, told="group_admins" if told else "service_desk")


# --- departments ------------------------------------------------------------------------------


def _policy(body: m.PolicyBody) -> Policy:
    return Policy(
        **body.model_dump(exclude={"reference_number_rule"}),
        reference_number_rule=m.reference_number_rule(body.reference_number_rule),
    )


@departments_router.post(
    "/api/departments",
    status_code=201,
    response_model=m.DepartmentCreated,
    responses=problem_responses(400, 401, 403, 422),
    summary="Create a sending department or a PACS destination (service desk)",
)
async def create_department(
    body: m.DepartmentCreate, app: IdentityDep, principal: Principal, ip: ClientIP
) -> m.DepartmentCreated:
    department_id = await departments.create_department(
        app,
        principal,
        ip,
        name=body.name,
        country=body.country,
        kind=body.kind,
        email=body.email,
        pacs=body.pacs.contract() if body.pacs else None,
        rsw=body.rsw.contract() if body.rsw else None,
        policy=_policy(body.policy) if body.policy else None,
        institution_id=body.institution_id,
        language=body.language,
    )
    return m.DepartmentCreated(id=department_id, department_id=department_id)


@departments_router.get(
    "/api/departments/{department_id}",
    response_model=m.DepartmentView,
    responses=problem_responses(401, 404),
)
async def get_department(
    department_id: str, app: IdentityDep, principal: Principal
) -> m.DepartmentView:
    """Anyone sees the name, kind, contact and policy; network addresses (PACS, RSW) and who
    administers the department only its admins and the service desk."""
    doc = await departments.department_doc(app, department_id)
    full = principal.has_role("service_desk") or department_id in principal.admin_of
    return m.DepartmentView(
        department_id=doc["_id"],
        name=doc["name"],
        country=doc["country"],
        kind=doc["kind"],
        email=doc.get("email"),
        pacs=doc.get("pacs") if full else None,
        rsw=doc.get("rsw") if full else None,
        policy=m.PolicyBody.model_validate(doc.get("policy") or {}),
        admin_ids=(doc.get("admin_ids") or []) if full else None,
        institution_id=doc.get("institution_id"),
    )


@departments_router.put(
    "/api/departments/{department_id}/policy",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 422),
    summary="Set the department's sharing and patient-access policy",
)
async def put_policy(
    department_id: str, body: m.PolicyBody, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await departments.set_policy(app, department_id, _policy(body), principal, ip)
    return Response(status_code=204)


@departments_router.post(
    "/api/departments/{department_id}/admins",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 422),
    summary="Make a user admin of the department",
)
async def add_department_admin(
    department_id: str, body: m.UserRef, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await departments.assign_admin(app, department_id, body.user_id, principal, ip)
    return Response(status_code=204)


@departments_router.delete(
    "/api/departments/{department_id}/admins/{user_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404),
)
async def remove_department_admin(
    department_id: str, user_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await departments.remove_admin(app, department_id, user_id, principal, ip)
    return Response(status_code=204)


@departments_router.post(
    "/api/departments/{department_id}/members",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 422),
    summary="Add a user to the department (staff or physician)",
)
async def add_department_member(
    department_id: str,
    body: m.DepartmentMember,
    app: IdentityDep,
    principal: Principal,
    ip: ClientIP,
) -> Response:
    await departments.add_member(app, department_id, body.user_id, body.role, principal, ip)
    return Response(status_code=204)


@departments_router.delete(
    "/api/departments/{department_id}/members/{user_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404),
)
async def remove_department_member(
    department_id: str, user_id: str, app: IdentityDep, principal: Principal, ip: ClientIP
) -> Response:
    await departments.remove_member(app, department_id, user_id, principal, ip)
    return Response(status_code=204)


# --- internal: the list of ended sessions -----------------------------------------------------

internal_router = APIRouter(include_in_schema=False)
SESSION_ENDS = "/internal/session-ends"
FOLLOWER_ID = Query(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")


@internal_router.get(SESSION_ENDS)
async def session_ends(
    app: IdentityDep,
    follower: Annotated[str, FOLLOWER_ID],
    caller: Annotated[str, internal_caller(*internal_callers("identity", "GET", SESSION_ENDS))],
    after: Annotated[int | None, Query(ge=0)] = None,
    wait_s: Annotated[float, Query(ge=0, le=10)] = 2.0,
    lease_s: Annotated[float, Query(ge=0.5, le=60)] = 10.0,
) -> dict[str, Any]:
    """An API process's long poll (`plumbing.session_feed`): it has every end up to `after`
    (none yet: all kept ends are returned). Recorded as the process's beat *before* the ends
    are read, so a logout either waits for this process or its end is in this answer."""
    await app.session_followers.beat(
        follower, JOINING if after is None else after, lease_s=lease_s, service=caller
    )
    ends = await app.session_ends.after(after)
    if not ends and after is not None:
        await app.session_ends.wait_beyond(after, wait_s)
        ends = await app.session_ends.after(after)
    position = max([after or 0, *(int(e["_id"]) for e in ends)])
    return {
        "position": position,
        "ends": [
            {
                "seq": int(e["_id"]),
                "kind": e["kind"],
                "key": e["key"],
                "at": e["at"],
                "reason": e["reason"],
            }
            for e in ends
        ],
    }


@internal_router.delete(SESSION_ENDS + "/followers/{follower}", status_code=204)
async def leave_session_ends(
    follower: str,
    app: IdentityDep,
    caller: Annotated[
        str,
        internal_caller(
            *internal_callers("identity", "DELETE", SESSION_ENDS + "/followers/{follower}")
        ),
    ],
) -> Response:
    """A stopping API process answers nothing more: logouts need not wait for it."""
    await app.session_followers.leave(follower)
    return Response(status_code=204)


# --- application ------------------------------------------------------------------------------


async def start_identity(app: FastAPI, db, settings: IdentitySettings) -> Identity:
    """Everything the API needs at start-up (also used by tests that skip the lifespan)."""
    identity = await Identity.start(db, settings)
    await accounts.ensure_bootstrap_user(identity)
    app.state.identity = identity
    app.state.verifier = JWKSVerifier.from_jwks(identity.jwks())
    if not hasattr(app.state, "identity_providers"):
        app.state.identity_providers = {}
    if settings.demo_eid:
        app.state.identity_providers.setdefault(DemoEid.name, DemoEid(settings.public_base_url))
    return identity


def create_app(settings: IdentitySettings | None = None) -> FastAPI:
    settings = settings or IdentitySettings()
    settings.check_signing_key()
    client = mongo_client(settings)
    db = client[settings.database_name]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        identity = await start_identity(app, db, settings)
        identity.session_ends.start()
        identity.access_barrier = AccessBarrierClient.for_settings(settings, identity.store)
        try:
            yield
        finally:
            await identity.session_ends.stop()
            if identity.access_barrier is not None:
                await identity.access_barrier.close()
            await client.close()

    app = plumbing_app(
        settings,
        title="StudyShare identity",
        description="Accounts, groups, departments, logins and tokens.",
        routers=[
            auth_router,
            users_router,
            groups_router,
            departments_router,
            internal_router,
            *([demo_eid_router] if settings.demo_eid else []),
        ],
        lifespan=lifespan,
        readiness=[mongo_ready(db), kafka_ready(settings.kafka)],
        statuses=STATUS,
    )

    @app.exception_handler(WrongEnvironment)
    async def wrong_environment(request: Request, exc: WrongEnvironment) -> Response:
        return refused(exc, STATUS, environment=exc.environment, portal_url=exc.portal_url)

    @app.exception_handler(TOTPRequired)
    async def totp_required(request: Request, exc: TOTPRequired) -> Response:
        extra = {"login_ticket": exc.login_ticket} if exc.login_ticket else {}
        return refused(exc, STATUS, **extra)

    return app
