"""Logins and tokens: password (+ TOTP) login with brute-force protection, rotating refresh
tokens, logout, and logins through an external identity provider (eID)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import LoginFailed
from studyshare.contracts.tokens import AccessClaims
from studyshare.identity.adapters.eid import ExternalIdentityProvider
from studyshare.identity.adapters.read_models import USERS
from studyshare.identity.adapters.stores import Attempt
from studyshare.identity.domain import totp
from studyshare.identity.domain.environment import offered_environment as offered_environment_of
from studyshare.identity.domain.exceptions import (
    GENERIC_LOGIN_REFUSAL,
    AccountDeactivated,
    AccountNotApproved,
    ExternalIdentityNotLinked,
    ExternalLoginStateInvalid,
    ExternalLoginTicketInvalid,
    InvalidCredentials,
    InvalidRefreshToken,
    LoginTemporarilyLocked,
    RefreshTokenReused,
    TOTPRequired,
    WrongEnvironment,
)
from studyshare.identity.domain.session import LoginSession
from studyshare.identity.domain.user import User
from studyshare.identity.service_layer import throttling
from studyshare.identity.service_layer.context import Identity
from studyshare.identity.service_layer.throttling import Gate
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.errors import Unauthorized
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    token_type: str = "Bearer"  # noqa: S105 - the token scheme
    user_id: str = ""


def access_token(app: Identity, user: dict[str, Any], session_id: str) -> str:
    return app.signer.sign(
        ttl_s=app.settings.access_token_ttl_s,
        sub=user["_id"],
        kind="user",
        roles=list(user.get("roles") or ()),
        department_ids=list(user.get("department_ids") or ()),
        admin_of=list(user.get("admin_of") or ()),
        environment=user.get("environment") or app.settings.environment_code,
        sid=session_id,
    )


def _locked(retry_after_s: int) -> LoginTemporarilyLocked:
    return LoginTemporarilyLocked("Too many failed attempts. Try again later.", retry_after_s)


def _gates(app: Identity, username: str, ip: str | None) -> list[Gate]:
    """The counters a guess at an account's password or code passes: its name's, its source's."""
    gates = [Gate(f"user:{username.casefold()}", app.account_lockout, _locked)]
    if ip:
        gates.append(Gate(f"ip:{ip}", app.source_lockout, _locked))
    return gates


async def _passed(app: Identity, attempts: list[Attempt]) -> None:
    """The secret was right: the account name's count starts again, the source's is given back."""
    name, *source = attempts
    await app.throttle.succeeded(name)
    await throttling.release(app, source)


async def _refuse(
    app: Identity,
    attempts: list[Attempt],
    *,
    reason: str,
    user: dict[str, Any] | None,
    ip: str | None,
    now: datetime,
    actor: Actor | None = None,
) -> None:
    """The admitted guess was wrong (counted per account name and per source already):
    record it (by `actor`, anonymous for a login), maybe lock."""
    until, *_ = await throttling.failed(app, attempts, app.clock())  # from this failure on
    failures = attempts[0].failures
    user_id = user["_id"] if user else None
    await app.record(
        LoginFailed(
            attempt_id=(attempt := new_id("att")),
            user_id=user_id,
            reason=reason,  # type: ignore[arg-type]
            consecutive_failures=failures,
            source_ip=ip,
        ),
        attempt,
        actor or Actor(kind="anonymous", ip=ip),
    )
    if user_id and until is not None:
        await app.execute(User, user_id, lambda u: u.lock(until, failures), Actor.system("login"))
    log.info("login.failed", reason=reason, user_id=user_id, failures=failures)


async def login(
    app: Identity, username: str, password: str, otp: str | None, ip: str | None
) -> TokenPair:
    """Check a password (+ TOTP code) only once the account name and the source admitted the
    guess: a locked name or source is refused before anything is read or written."""
    now = app.clock()
    attempts = await throttling.admit(app, _gates(app, username, ip), now)
    user = await app.db[USERS].find_one({"username_lower": username.casefold()})
    creds = await app.credentials.get(user["_id"]) if user else None
    if not await app.passwords.verify(creds and creds.get("password_hash"), password):
        await _refuse(app, attempts, reason="bad_credentials", user=user, ip=ip, now=now)
        raise InvalidCredentials()
    assert user is not None and creds is not None
    # the password checked out: from here on the caller may learn about the account
    environment = user.get("environment") or app.settings.environment_code
    if environment != app.settings.environment_code:
        await throttling.release(app, attempts)
        await _record_refusal(app, user, "wrong_environment", ip)
        raise WrongEnvironment(
            f"This account belongs to the {environment!r} environment; log in on its portal.",
            environment,
            app.settings.portal_table.get(environment),
        )
    if user["status"] == "pending":
        await throttling.release(app, attempts)
        await _record_refusal(app, user, "not_approved", ip)
        raise AccountNotApproved("the account waits for approval by the service desk")
    if user["status"] != "active":
        await throttling.release(app, attempts)
        await _record_refusal(app, user, "deactivated", ip)
        raise AccountDeactivated("the account is deactivated")
    method = "password"
    if user.get("totp_enabled"):
        if not otp:
            await throttling.release(app, attempts)
            raise TOTPRequired("enter the code of your authenticator app")
        step = totp.matching_step(creds["totp_secret"], otp, now, creds.get("totp_last_step"))
        if step is None or not await app.credentials.use_totp_step(user["_id"], step):
            await _refuse(app, attempts, reason="bad_totp", user=user, ip=ip, now=now)
            raise InvalidCredentials()
        method = "password+totp"
    await _passed(app, attempts)
    return await open_session(app, user, method, ip)


async def confirm_password(
    app: Identity, user: dict[str, Any], password: str, actor: Actor
) -> None:
    """A holder of the account's token proves they know its password (before changing who they
    are): a guess like a login's, through the same gates, counted against the same budget,
    recorded and locked alike."""
    now = app.clock()
    attempts = await throttling.admit(app, _gates(app, user["username"], actor.ip), now)
    creds = await app.credentials.get(user["_id"])
    if not await app.passwords.verify(creds and creds.get("password_hash"), password):
        await _refuse(
            app, attempts, reason="bad_credentials", user=user, ip=actor.ip, now=now, actor=actor
        )
        raise InvalidCredentials("the current password is not correct")
    await _passed(app, attempts)


async def offered_environment(app: Identity, username: str) -> dict[str, Any]:
    """One indexed read whatever the username (found or not), the answer from a pure rule: no
    branch on existence that could differ in timing or shape (`domain.environment`)."""
    account = await app.db[USERS].find_one(
        {"username_lower": username.strip().casefold()}, {"environment": 1, "status": 1}
    )
    current = app.settings.environment_code
    code = offered_environment_of(account, current)
    return {
        "environment": code,
        "portal_url": app.settings.portal_table.get(code),
        "current": code == current,
    }


async def _record_refusal(app: Identity, user: dict[str, Any], reason: str, ip: str | None):
    await app.record(
        LoginFailed(
            attempt_id=(a := new_id("att")), user_id=user["_id"], reason=reason, source_ip=ip
        ),  # type: ignore[arg-type]
        a,
        Actor(kind="anonymous", ip=ip),
    )


async def open_session(app: Identity, user: dict[str, Any], method: str, ip: str | None):
    now = app.clock()
    session_id = new_id("ses")
    refresh = secrets.token_urlsafe(32)
    await app.sessions.open(session_id, user["_id"], refresh, now, app.settings.refresh_token_ttl_s)
    await app.execute(
        LoginSession,
        session_id,
        lambda s: s.logged_in(user["_id"], method, ip),
        Actor(kind="user", id=user["_id"], ip=ip),
    )
    log.info("login.succeeded", user_id=user["_id"], method=method)
    return TokenPair(
        access_token(app, user, session_id),
        refresh,
        app.settings.access_token_ttl_s,
        session_id,
        user_id=user["_id"],
    )


async def refresh(app: Identity, refresh_token: str, ip: str | None) -> TokenPair:
    """Rotate: the presented token is spent, a new one is issued in the same session. A spent
    token presented again revokes the whole session (its family)."""
    now = app.clock()
    doc = await app.sessions.find_token(refresh_token)
    if doc is None or doc["expires_at"] <= now:
        raise InvalidRefreshToken("the refresh token is not valid")
    session = await app.sessions.get(doc["session_id"])
    if session is None or session.get("revoked_at") is not None:
        raise InvalidRefreshToken("the session has ended; log in again")
    if doc.get("used_at") is not None or not await app.sessions.use_token(refresh_token, now):
        await app.sessions.revoke(doc["session_id"], now, "refresh_token_reuse")
        await app.execute(
            LoginSession,
            doc["session_id"],
            lambda s: s.refresh_reused(doc["user_id"], ip),
            Actor(kind="anonymous", ip=ip),
        )
        log.warning("refresh.reused", user_id=doc["user_id"], session_id=doc["session_id"])
        raise RefreshTokenReused("this refresh token was already used; the session is revoked")
    user = await app.db[USERS].find_one({"_id": doc["user_id"]})
    if user is None or user["status"] != "active":
        await app.sessions.revoke(doc["session_id"], now, "account_inactive")
        raise InvalidRefreshToken("the account is not active")
    new_refresh = secrets.token_urlsafe(32)
    await app.sessions.add_token(
        doc["session_id"], user["_id"], new_refresh, now, app.settings.refresh_token_ttl_s
    )
    await app.execute(
        LoginSession,
        doc["session_id"],
        lambda s: s.logged_in(user["_id"], "refresh", ip),
        Actor(kind="user", id=user["_id"], ip=ip),
    )
    signed = access_token(app, user, doc["session_id"])
    if await _ended_since(app, doc["session_id"], user["_id"]):
        raise InvalidRefreshToken("the session has ended; log in again")
    return TokenPair(signed, new_refresh, app.settings.access_token_ttl_s, doc["session_id"])


async def _ended_since(app: Identity, session_id: str, user_id: str) -> bool:
    """Whether the session or the account ended after `refresh` checked them. A password
    change, reset or deactivation ends the sessions in its own transaction and dates the
    account's end at its commit, so a token signed before this look is either refused here
    or issued before that end (which the other services refuse); without it, a refresh in
    flight during a reset signed a token they accepted for its lifetime."""
    session = await app.sessions.get(session_id)
    if session is None or session.get("revoked_at") is not None:
        return True
    user = await app.db[USERS].find_one({"_id": user_id}, {"status": 1})
    return user is None or user["status"] != "active"


#: the kinds of token that belong to a login session (`sid`): a user's and a patient's
SESSION_HOLDERS = ("user", "patient")


async def logout(
    app: Identity, principal: AccessClaims | None, refresh_token: str | None, ip: str | None
) -> None:
    """End the session named by the bearer token (a user's or a patient's) and/or the
    refresh token; every service refuses its tokens from the answer on (`LoggedOut`)."""
    now = app.clock()
    targets: dict[str, Actor] = {}
    if principal is not None and principal.kind in SESSION_HOLDERS and principal.sid:
        targets[principal.sid] = Actor(kind=principal.kind, id=principal.sub, ip=ip)
    if refresh_token:
        doc = await app.sessions.find_token(refresh_token)
        if doc is not None:
            targets[doc["session_id"]] = Actor(kind="user", id=doc["user_id"], ip=ip)
    if not targets:
        raise Unauthorized("give the bearer token or the refresh token of the session to end")
    for session_id, holder in targets.items():
        if await app.sessions.revoke(session_id, now, "logout"):
            await app.execute(
                LoginSession,
                session_id,
                lambda s, holder_id=holder.id: s.logged_out(holder_id),
                holder,
            )


async def session_ended(app: Identity, principal: AccessClaims) -> str | None:
    """Why identity's own endpoints refuse the token, as every service does: its session
    ended, or its account's tokens until a change (roles, password; `plumbing.revocations`)."""
    if principal.kind not in SESSION_HOLDERS or not principal.sid:
        return None
    session, account = await asyncio.gather(
        app.sessions.get(principal.sid),
        app.session_ends.account_ended(principal.sub, principal.iat),
    )
    if session is not None and session.get("revoked_at") is not None:
        return "the session of this token has ended"
    return account


async def start_external_login(
    app: Identity,
    provider: ExternalIdentityProvider,
    redirect_uri: str,
    linking_user_id: str | None = None,
) -> tuple[str, str]:
    """Where to send the browser, and the `state` it must bring back: single use, for this
    provider, expiring; bound to the user who links the identity (`accounts.start_linking`,
    with the current password), otherwise good for a login only."""
    state = secrets.token_urlsafe(32)
    expires_at = app.clock() + timedelta(seconds=app.settings.external_login_state_ttl_s)
    await app.external_logins.put_state(state, provider.name, linking_user_id, expires_at)
    return provider.authorization_url(state, redirect_uri), state


async def _take_state(
    app: Identity, provider: ExternalIdentityProvider, callback: dict[str, str]
) -> dict[str, Any]:
    state = callback.get("state") or ""
    doc = await app.external_logins.take_state(state, provider.name, app.clock()) if state else None
    if doc is None:
        raise ExternalLoginStateInvalid(
            "this external login was not started here, was finished already, or expired"
        )
    return doc


async def login_with_external_identity(
    app: Identity, provider: ExternalIdentityProvider, callback: dict[str, str], ip: str | None
) -> TokenPair:
    """Finish an eID (or other external) login: the `state` must be one this service handed
    out, the provider proves who it is, a link says which account that is; an account with
    TOTP then needs its code (`TOTPRequired` with a `login_ticket` for
    `finish_external_login_with_totp`)."""
    await _take_state(app, provider, callback)
    identity = await provider.complete(callback)
    user_id = await app.external.user_for(provider.name, identity.subject)
    if user_id is None:
        raise ExternalIdentityNotLinked(
            "this identity is not linked to an account; log in once with your password and link it"
        )
    user = await app.db[USERS].find_one({"_id": user_id})
    if user is None or user["status"] != "active":
        raise InvalidCredentials(GENERIC_LOGIN_REFUSAL)
    if user.get("totp_enabled"):
        ticket = secrets.token_urlsafe(32)
        expires_at = app.clock() + timedelta(seconds=app.settings.external_login_totp_ttl_s)
        await app.external_logins.put_ticket(ticket, provider.name, user_id, expires_at)
        raise TOTPRequired("enter the code of your authenticator app", login_ticket=ticket)
    return await open_session(app, user, "eid", ip)


async def finish_external_login_with_totp(
    app: Identity, provider: ExternalIdentityProvider, ticket: str, otp: str, ip: str | None
) -> TokenPair:
    """The second step of an external login of an account with TOTP. The ticket is single use:
    a wrong code counts as a failed login of the account (and may lock it), and the external
    login starts again."""
    now = app.clock()
    doc = await app.external_logins.take_ticket(ticket, provider.name, now)
    if doc is None:
        raise ExternalLoginTicketInvalid("this login waits for no code; start it again")
    user = await app.db[USERS].find_one({"_id": doc["user_id"]})
    if user is None or user["status"] != "active":
        raise InvalidCredentials(GENERIC_LOGIN_REFUSAL)
    attempts = await throttling.admit(app, _gates(app, user["username"], ip), now)
    creds = await app.credentials.get(user["_id"])
    step = (
        totp.matching_step(creds["totp_secret"], otp, now, creds.get("totp_last_step"))
        if creds and creds.get("totp_secret")
        else None
    )
    if step is None or not await app.credentials.use_totp_step(user["_id"], step):
        await _refuse(app, attempts, reason="bad_totp", user=user, ip=ip, now=now)
        raise InvalidCredentials()
    await _passed(app, attempts)
    return await open_session(app, user, "eid+totp", ip)


async def link_external_identity(
    app: Identity,
    provider: ExternalIdentityProvider,
    callback: dict[str, str],
    principal: AccessClaims,
    ip: str | None,
) -> None:
    """Link the identity the provider vouches for to the caller's account: only with a `state`
    this caller started (else an attacker's identity could be linked to a victim's account by
    having the victim's browser finish the attacker's login)."""
    state = await _take_state(app, provider, callback)
    if state.get("user_id") != principal.sub:
        raise ExternalLoginStateInvalid(
            "this external login was not started to link an identity to your account"
        )
    identity = await provider.complete(callback)

    async def link(session) -> None:
        await app.external.link(provider.name, identity.subject, principal.sub, session)

    await app.execute(
        User,
        principal.sub,
        lambda u: u.link_external(provider.name),
        Actor(kind="user", id=principal.sub, ip=ip),
        also=link,
    )
