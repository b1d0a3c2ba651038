"""Accounts: registration (by an admin, or self-registration awaiting approval), approval,
profile, roles, deactivation, password and TOTP enrolment, the bootstrap service desk."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.identity.adapters.eid import ExternalIdentityProvider
from studyshare.identity.adapters.read_models import DEPARTMENTS, USERS
from studyshare.identity.domain import totp
from studyshare.identity.domain.department import Department
from studyshare.identity.domain.exceptions import (
    CannotDeactivateYourself,
    CurrentPasswordRequired,
    DepartmentNotFound,
    InvalidTOTPCode,
    MobileChangeRequestedTooOften,
    NotAllowed,
    RegistrationsTooOften,
    TOTPAlreadyEnabled,
    TOTPEnrolmentMissing,
    UnknownEnvironment,
    UsernameTaken,
    UserNotFound,
    WeakPassword,
    WrongMobileChangeCode,
)
from studyshare.identity.domain.user import PASSWORD_GUARDED_FIELDS, ROLES, Registration, User
from studyshare.identity.service_layer import auth, throttling
from studyshare.identity.service_layer.context import Identity
from studyshare.identity.service_layer.throttling import Gate
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.sealing import seal

log = get_logger(__name__)

MIN_PASSWORD = 10


def actor_of(principal: AccessClaims | None, ip: str | None = None) -> Actor:
    if principal is None:
        return Actor(kind="anonymous", ip=ip)
    return Actor(
        kind=principal.kind,
        id=principal.sub,
        role=principal.roles[0] if principal.roles else None,
        ip=ip,
    )


def check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"a password has at least {MIN_PASSWORD} characters")
    if username.casefold() in password.casefold():
        raise WeakPassword("a password must not contain the username")


async def _register(
    app: Identity,
    reg: Registration,
    password: str,
    *,
    pending: bool,
    actor: Actor,
    check: bool = True,
) -> str:
    if reg.environment not in {app.settings.environment_code, *app.settings.portal_table}:
        raise UnknownEnvironment(f"there is no environment {reg.environment!r}")
    if check:
        check_password(password, reg.username)
    password_hash = await app.passwords.hash(password)
    user_id = new_id("usr")

    async def store_credentials(session) -> None:
        await app.credentials.create(user_id, password_hash, session)

    try:
        await app.execute(
            User,
            user_id,
            lambda _: User.register(user_id, reg, pending=pending, registered_by=actor.id),
            actor,
            also=store_credentials,
        )
    except DuplicateKeyError:
        raise UsernameTaken(f"the username {reg.username!r} is taken") from None
    log.info("user.registered", user_id=user_id, pending=pending)
    return user_id


async def register_by_admin(
    app: Identity, reg: Registration, password: str, principal: AccessClaims, ip: str | None
) -> str:
    """The service desk registers anyone; a department admin registers physicians and staff
    of the departments they administer."""
    if not principal.has_role("service_desk"):
        if not principal.has_role("department_admin"):
            raise NotAllowed("only a department admin or the service desk registers users")
        allowed = set(principal.admin_of)
        if (
            not reg.department_ids
            or not set(reg.department_ids) <= allowed
            or not set(reg.admin_of) <= allowed
        ):  # of no department, an active physician would skip the desk's approval
            raise NotAllowed("a department admin registers users of their own departments only")
        if not set(reg.roles) <= {"physician", "department_staff", "department_admin"}:
            raise NotAllowed("a department admin cannot grant these roles")
    if set(reg.roles) - set(ROLES):
        raise NotAllowed(f"unknown roles: {sorted(set(reg.roles) - set(ROLES))}")
    if reg.admin_of and "department_admin" not in reg.roles:
        reg = replace(reg, roles=(*reg.roles, "department_admin"))
    reg = replace(reg, department_ids=tuple(dict.fromkeys((*reg.department_ids, *reg.admin_of))))
    await _known_departments(app, reg.admin_of)  # before anyone is registered as its admin
    actor = actor_of(principal, ip)
    user_id = await _register(app, reg, password, pending=False, actor=actor)
    await department_admins_follow(app, user_id, (), reg.admin_of, actor)
    return user_id


async def _known_departments(app: Identity, department_ids: tuple[str, ...]) -> None:
    wanted = set(department_ids)
    if not wanted:
        return
    known = {d["_id"] async for d in app.db[DEPARTMENTS].find({"_id": {"$in": sorted(wanted)}})}
    if missing := wanted - known:
        raise DepartmentNotFound(f"department {sorted(missing)[0]} does not exist")


async def department_admins_follow(
    app: Identity, user_id: str, before: tuple[str, ...], after: tuple[str, ...], actor: Actor
) -> None:
    """The departments' admins follow a user's `admin_of`, however it changed (registered an
    admin, the desk's roles, left the department): each department names every admin of its
    own (`admin_ids`), and its admins route removes each. (An admin made otherwise was
    missing from it, and its removal answered 404 `NotAMember`.)"""
    for department_id in dict.fromkeys(after):
        if department_id not in before:
            await app.execute(
                Department, department_id, lambda d: d.assign_admin(user_id, actor.id), actor
            )
    for department_id in dict.fromkeys(before):
        if department_id not in after:
            await app.execute(
                Department, department_id, lambda d: d.drop_admin(user_id, actor.id), actor
            )


async def self_register(app: Identity, reg: Registration, password: str, ip: str | None) -> str:
    """A physician registers; the account waits for the service desk's approval. Each source
    makes `registrations_per_source` registrations (made or refused) before it waits."""
    if ip:
        now = app.clock()
        gate = Gate(f"register:{ip}", app.registration_limit, _registrations_too_often)
        await throttling.failed(app, await throttling.admit(app, [gate], now), now)
    reg = replace(reg, roles=("physician",), department_ids=(), admin_of=())
    return await _register(app, reg, password, pending=True, actor=Actor(kind="anonymous", ip=ip))


def _registrations_too_often(retry_after_s: int) -> RegistrationsTooOften:
    return RegistrationsTooOften(
        "too many registrations from here lately; try again later", retry_after_s
    )


async def approve(app: Identity, user_id: str, principal: AccessClaims, ip: str | None) -> None:
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk approves registrations")
    await app.execute(User, user_id, lambda u: u.approve(principal.sub), actor_of(principal, ip))


async def pending(app: Identity, principal: AccessClaims, limit: int = 500) -> list[dict[str, Any]]:
    """Self-registrations waiting for the service desk, oldest first."""
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk sees pending registrations")
    cursor = app.db[USERS].find({"status": "pending"}).sort("registered_at", 1).limit(limit)
    return await cursor.to_list(None)


async def search(
    app: Identity, principal: AccessClaims, q: str, limit: int = 20
) -> list[dict[str, Any]]:
    """The service desk finds an account, whatever its status, by the start of its username
    or by its e-mail address."""
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk searches accounts")
    needle = q.strip().casefold()
    if not needle:
        return []
    by_name = {"username_lower": {"$gte": needle, "$lt": needle + "\uffff"}}
    by_email = {"email": {"$in": sorted({q.strip(), needle})}}
    cursor = app.db[USERS].find({"$or": [by_name, by_email]}).sort("username_lower", 1)
    return await cursor.limit(limit).to_list(None)


async def locked(app: Identity, principal: AccessClaims) -> list[dict[str, Any]]:
    """Accounts whose name is locked now after failed logins, with until when (service
    desk; `unlock` lifts it). Failures of names no account has are not listed."""
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk sees locked accounts")
    locks = await app.throttle.locked("user:", app.clock())
    if not locks:
        return []
    cursor = app.db[USERS].find({"username_lower": {"$in": sorted(locks)}})
    return [
        {
            **doc,
            "locked_until": locks[doc["username_lower"]]["locked_until"],
            "failures": int(locks[doc["username_lower"]].get("failures", 0)),
        }
        async for doc in cursor.sort("username_lower", 1)
    ]


async def user_doc(app: Identity, user_id: str) -> dict[str, Any]:
    doc = await app.read_models.user(user_id)
    if doc is None:
        raise UserNotFound(f"user {user_id} does not exist")
    return doc


async def confirm_current_password(
    app: Identity, user_id: str, current_password: str | None, actor: Actor
) -> dict[str, Any]:
    """The caller proves they are the account holder, not just a holder of its token: a guess
    at the password, throttled, recorded and locked as a login's (`auth.confirm_password`).
    The account's document."""
    if not current_password:
        raise CurrentPasswordRequired("this change needs your current password (current_password)")
    user = await user_doc(app, user_id)
    await auth.confirm_password(app, user, current_password, actor)
    return user


async def start_linking(
    app: Identity,
    provider: ExternalIdentityProvider,
    redirect_uri: str,
    principal: AccessClaims,
    current_password: str | None,
    ip: str | None,
) -> tuple[str, str]:
    """Start a login at `provider` whose identity will be linked to the caller's account: a
    second way into it, so only for the account holder (the current password), not for any
    holder of its token or of an unattended session. The provider's URL and the `state`."""
    await confirm_current_password(app, principal.sub, current_password, actor_of(principal, ip))
    return await auth.start_external_login(app, provider, redirect_uri, principal.sub)


async def change_profile(
    app: Identity,
    user_id: str,
    changes: dict[str, Any],
    principal: AccessClaims,
    ip: str | None,
    current_password: str | None = None,
) -> None:
    """Language and visibility freely; names, e-mail and physician numbers with the current
    password; the mobile only through `request_mobile_change` (the domain refuses it here)."""
    confirmed = False
    if changes.get("mobile") is None and any(
        changes.get(k) is not None for k in PASSWORD_GUARDED_FIELDS
    ):
        await confirm_current_password(app, user_id, current_password, actor_of(principal, ip))
        confirmed = True
    await app.execute(
        User,
        user_id,
        lambda u: u.change_profile(changes, password_confirmed=confirmed),
        actor_of(principal, ip),
    )


async def request_mobile_change(
    app: Identity,
    principal: AccessClaims,
    mobile: str,
    current_password: str | None,
    ip: str | None,
) -> datetime:
    """Current password first; then a code to the new number (sealed for notify in the
    event, kept here as a digest only). A new request voids the pending one; one per
    `mobile_change_resend_s`."""
    await confirm_current_password(app, principal.sub, current_password, actor_of(principal, ip))
    now = app.clock()
    gap = timedelta(seconds=app.settings.mobile_change_resend_s)
    last = await app.mobile_changes.requested_after(principal.sub, now - gap)
    if last is not None:
        wait = int((last + gap - now).total_seconds()) + 1
        raise MobileChangeRequestedTooOften(
            "a code for a new mobile number was sent moments ago; wait before asking again",
            retry_after_s=max(1, wait),
        )
    code = f"{secrets.randbelow(10**6):06d}"
    change_id = new_id("mob")
    expires_at = now + timedelta(seconds=app.settings.mobile_change_code_ttl_s)

    async def remember(session) -> None:
        await app.mobile_changes.put(
            principal.sub, change_id, mobile, code, expires_at, now, session=session
        )

    await app.execute(
        User,
        principal.sub,
        lambda u: u.request_mobile_change(
            change_id, mobile, seal(code, app.settings.otp_seal_public_key), expires_at
        ),
        actor_of(principal, ip),
        also=remember,
    )
    log.info("mobile_change.requested", user_id=principal.sub, change_id=change_id)
    return expires_at


async def confirm_mobile_change(
    app: Identity, principal: AccessClaims, code: str, ip: str | None
) -> None:
    """The code sent to the new number: the number changes and the previous one is told."""
    pending = await app.mobile_changes.consume(principal.sub, code, app.clock())
    if pending is None:
        raise WrongMobileChangeCode(
            "the code is wrong, expired, already used or voided by a newer one "
            "(ask for a code with POST /api/users/me/mobile)"
        )
    await app.execute(
        User,
        principal.sub,
        lambda u: u.confirm_mobile_change(pending["change_id"], pending["mobile"]),
        actor_of(principal, ip),
    )
    log.info("mobile_change.confirmed", user_id=principal.sub, change_id=pending["change_id"])


async def set_roles(
    app: Identity,
    user_id: str,
    principal: AccessClaims,
    ip: str | None,
    *,
    roles: tuple[str, ...] | None = None,
    department_ids: tuple[str, ...] | None = None,
    admin_of: tuple[str, ...] | None = None,
) -> User:
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk changes roles")
    if roles is not None and set(roles) - set(ROLES):
        raise NotAllowed(f"unknown roles: {sorted(set(roles) - set(ROLES))}")
    await _known_departments(app, admin_of or ())
    before: tuple[str, ...] = ()

    def decide(u: User) -> list:
        nonlocal before
        before = u.admin_of
        return u.set_roles(
            principal.sub, roles=roles, department_ids=department_ids, admin_of=admin_of
        )

    actor = actor_of(principal, ip)
    user, _ = await app.execute(User, user_id, decide, actor)
    await department_admins_follow(app, user_id, before, user.admin_of, actor)
    return user


async def deactivate(app: Identity, user_id: str, principal: AccessClaims, ip: str | None) -> None:
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk deactivates accounts")
    if user_id == principal.sub:
        raise CannotDeactivateYourself("an account cannot deactivate itself")

    async def end_sessions(session) -> None:  # with the event: see auth._ended_since
        await app.sessions.revoke_all_of(user_id, app.clock(), "deactivated", session=session)

    await app.execute(
        User,
        user_id,
        lambda u: u.deactivate(principal.sub),
        actor_of(principal, ip),
        also=end_sessions,
    )


async def change_password(
    app: Identity, principal: AccessClaims, current: str, new: str, ip: str | None
) -> None:
    """The user replaces their password: their other sessions end (a stolen refresh token with
    them); this one lives on, its tokens issued until now refused (refresh for new ones)."""
    user = await confirm_current_password(app, principal.sub, current, actor_of(principal, ip))
    check_password(new, user["username"])
    new_hash = await app.passwords.hash(new)

    async def store(session) -> None:
        await app.credentials.set_password(principal.sub, new_hash, session)
        await app.sessions.revoke_all_of(
            principal.sub, app.clock(), "password_changed", principal.sid, session
        )

    await app.execute(
        User,
        principal.sub,
        lambda u: u.change_password(principal.sub),
        actor_of(principal, ip),
        also=store,
    )


async def reset_password(
    app: Identity, user_id: str, new: str, principal: AccessClaims, ip: str | None
) -> None:
    """The service desk sets a new password (the user forgot theirs); every session ends."""
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk resets passwords")
    user = await user_doc(app, user_id)
    check_password(new, user["username"])
    new_hash = await app.passwords.hash(new)

    async def store(session) -> None:
        await app.credentials.set_password(user_id, new_hash, session)
        await app.sessions.revoke_all_of(user_id, app.clock(), "password_reset", session=session)

    await app.execute(
        User,
        user_id,
        lambda u: u.change_password(principal.sub),
        actor_of(principal, ip),
        also=store,
    )


async def disable_totp(
    app: Identity, user_id: str, principal: AccessClaims, ip: str | None
) -> None:
    """The service desk removes a lost second factor; the user can enrol a new one."""
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk removes a second factor")

    async def remove(session) -> None:
        await app.credentials.remove_totp(user_id, session)

    await app.execute(
        User,
        user_id,
        lambda u: u.disable_totp(principal.sub),
        actor_of(principal, ip),
        also=remove,
    )


async def unlock(app: Identity, user_id: str, principal: AccessClaims, ip: str | None) -> None:
    """The service desk lifts a brute-force lock on the account's name."""
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk unlocks accounts")
    user = await user_doc(app, user_id)
    await app.throttle.reset(f"user:{user['username_lower']}")
    await app.execute(User, user_id, lambda u: u.unlock(principal.sub), actor_of(principal, ip))


async def begin_totp(
    app: Identity, principal: AccessClaims, current_password: str | None, ip: str | None
) -> tuple[str, str]:
    """A fresh secret and its otpauth URI, for the account holder (the current password);
    enabled only once a code from it is confirmed."""
    user = await confirm_current_password(
        app, principal.sub, current_password, actor_of(principal, ip)
    )
    if user.get("totp_enabled"):
        raise TOTPAlreadyEnabled("a second factor is already enabled on this account")
    secret = totp.new_secret()
    await app.credentials.set_pending_totp(principal.sub, secret)
    return secret, totp.provisioning_uri(secret, user["username"])


async def confirm_totp(app: Identity, principal: AccessClaims, code: str, ip: str | None) -> None:
    creds = await app.credentials.get(principal.sub) or {}
    secret = creds.get("totp_pending_secret")
    if not secret:
        raise TOTPEnrolmentMissing("start the enrolment first (POST /api/users/me/totp)")
    step = totp.matching_step(secret, code, app.clock(), creds.get("totp_last_step"))
    if step is None:
        raise InvalidTOTPCode("the code does not match the enrolled secret")

    async def activate(session) -> None:
        await app.credentials.activate_totp(principal.sub, secret, step, session)

    await app.execute(
        User, principal.sub, lambda u: u.enable_totp(), actor_of(principal, ip), also=activate
    )


async def ensure_bootstrap_user(app: Identity) -> str | None:
    """The service-desk account from settings, created once (idempotent across restarts and
    API processes: the username is unique)."""
    s = app.settings
    if not s.bootstrap_user or not s.bootstrap_password:
        return None
    existing = await app.db[USERS].find_one({"username_lower": s.bootstrap_user.casefold()})
    if existing is not None:
        return existing["_id"]
    reg = Registration(
        username=s.bootstrap_user,
        first_name="Service",
        last_name="Desk",
        environment=s.environment_code,
        profession="service_desk",
        roles=("service_desk",),
    )
    try:
        return await _register(
            app,
            reg,
            s.bootstrap_password,
            pending=False,
            actor=Actor.system("bootstrap"),
            check=False,
        )
    except UsernameTaken:
        existing = await app.db[USERS].find_one({"username_lower": s.bootstrap_user.casefold()})
        return existing["_id"] if existing else None
