"""Identity's account commands over the in-memory event store (`plumbing.fakes`) and
in-memory stores: no database, no broker (issue 18, point 2). The API tests drive the same
commands over MongoDB."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from studyshare.contracts.tokens import AccessClaims
from studyshare.identity.adapters.passwords import Passwords
from studyshare.identity.adapters.stores import Attempt
from studyshare.identity.domain.exceptions import (
    CannotDeactivateYourself,
    InvalidCredentials,
    NotAllowed,
    UsernameTaken,
    WeakPassword,
)
from studyshare.identity.domain.lockout import LockoutPolicy
from studyshare.identity.domain.user import Registration
from studyshare.identity.service_layer import accounts
from studyshare.identity.service_layer.context import Identity
from studyshare.identity.settings import IdentitySettings
from studyshare.plumbing.fakes import InMemoryEventStore
from studyshare.plumbing.followers import BarrierOutcome
from studyshare.plumbing.tokens import TokenSigner

Doc = dict[str, Any]
PASSWORD = "correct horse battery"


class InMemoryUsers:
    """The users read model (`adapters.read_models.ReadModels`), as far as these commands
    read it: one document per user, a username taken once."""

    def __init__(self) -> None:
        self.users: dict[str, Doc] = {}

    async def user(self, user_id: str) -> Doc | None:
        return self.users.get(user_id)

    async def apply(self, envelopes, session: Any = None) -> None:
        for e in envelopes:
            p = e.payload
            if e.event_type == "UserRegistered":
                taken = {u["username_lower"] for u in self.users.values()}
                if p["username"].casefold() in taken:
                    raise DuplicateKeyError("username_lower")
                status = "pending" if p.get("pending_approval") else "active"
                self.users[p["user_id"]] = {
                    "_id": p["user_id"],
                    "username": p["username"],
                    "username_lower": p["username"].casefold(),
                    "status": status,
                }
            elif e.event_type == "UserApproved":
                self.users[p["user_id"]]["status"] = "active"
            elif e.event_type == "UserDeactivated":
                self.users[p["user_id"]]["status"] = "deactivated"


class InMemoryCredentials:
    def __init__(self) -> None:
        self.hashes: dict[str, str] = {}

    async def create(self, user_id: str, password_hash: str, session: Any = None) -> None:
        self.hashes[user_id] = password_hash

    async def get(self, user_id: str) -> Doc | None:
        return {"password_hash": self.hashes[user_id]} if user_id in self.hashes else None

    async def set_password(self, user_id: str, password_hash: str, session: Any = None) -> None:
        self.hashes[user_id] = password_hash


class InMemorySessions:
    def __init__(self) -> None:
        self.revoked: list[tuple[str, str]] = []

    async def revoke_all_of(
        self, user_id: str, now: datetime, reason: str, keep: str | None = None, session=None
    ) -> None:
        self.revoked.append((user_id, reason) if keep is None else (user_id, reason, keep))


class InMemoryThrottle:
    """The failure counters (`adapters.stores.Throttle`): counted on admission, locked when the
    policy says so (no decay: these tests take no time)."""

    def __init__(self) -> None:
        self.failures: dict[str, int] = {}
        self.locked_until: dict[str, datetime] = {}

    async def admit(self, key: str, now: datetime, policy: LockoutPolicy) -> Attempt | datetime:
        until = self.locked_until.get(key)
        if until is not None and until > now:
            return until
        self.failures[key] = self.failures.get(key, 0) + 1
        return Attempt(key, self.failures[key], policy)

    async def failed(self, attempt: Attempt, now: datetime) -> datetime | None:
        until = attempt.policy.locked_until(attempt.failures, now)
        if until is not None:
            self.locked_until[attempt.key] = until
        return until

    async def succeeded(self, attempt: Attempt) -> None:
        self.failures.pop(attempt.key, None)
        self.locked_until.pop(attempt.key, None)

    async def release(self, attempt: Attempt) -> None:
        self.failures[attempt.key] -= 1


class InMemorySessionEnds:
    """The list of ended sessions and accounts, and followers that always have it."""

    def __init__(self) -> None:
        self.ended: list = []

    async def record(self, endings) -> int:
        self.ended += endings
        return len(self.ended)

    async def wait_for(self, seq: int, *, timeout_s: float) -> BarrierOutcome:
        return BarrierOutcome(confirmed=True, waited_s=0.0, followers=0)


class Accounts:
    def __init__(self) -> None:
        self.store = InMemoryEventStore()
        self.users = InMemoryUsers()
        self.credentials = InMemoryCredentials()
        self.sessions = InMemorySessions()
        self.ends = InMemorySessionEnds()
        self.throttle = InMemoryThrottle()
        self.app = Identity(
            None,
            IdentitySettings(),
            TokenSigner(kid="fast"),
            Passwords(time_cost=1, memory_kib=8),
            store=self.store,
            read_models=self.users,  # type: ignore[arg-type]
            credentials=self.credentials,  # type: ignore[arg-type]
            sessions=self.sessions,  # type: ignore[arg-type]
            throttle=self.throttle,  # type: ignore[arg-type]
            session_ends=self.ends,  # type: ignore[arg-type]
            session_followers=self.ends,  # type: ignore[arg-type]
        )

    async def register(self, username: str, *roles: str, by: AccessClaims | None = None) -> str:
        reg = Registration(username=username, first_name="Dr", last_name=username, roles=roles)
        return await accounts.register_by_admin(self.app, reg, PASSWORD, by or DESK, None)

    def of(self, event_type: str) -> list[Doc]:
        return [e.payload for e in self.store.events_of(event_type)]


def who(sub: str, *roles: str, admin_of: tuple[str, ...] = ()) -> AccessClaims:
    now = int(time.time())
    return AccessClaims(
        sub=sub, roles=roles, admin_of=admin_of, sid="ses_mine", iat=now, exp=now + 60
    )


DESK = who("usr_desk", "service_desk")


@pytest.fixture
def a() -> Accounts:
    return Accounts()


async def test_the_desk_registers_an_account_with_its_password(a: Accounts) -> None:
    user_id = await a.register("dr.peeters", "physician")
    [registered] = a.of("UserRegistered")
    assert (registered["user_id"], registered["registered_by"]) == (user_id, "usr_desk")
    assert await a.app.passwords.verify(a.credentials.hashes[user_id], PASSWORD)
    assert a.users.users[user_id]["status"] == "active"


async def test_a_registration_is_refused_before_anything_is_stored(a: Accounts) -> None:
    admin = who("usr_admin", "department_admin", admin_of=("dep_1",))
    with pytest.raises(NotAllowed):
        await a.register("dr.janssens", "service_desk", by=admin)
    reg = Registration(username="dr.janssens", first_name="Dr", last_name="Janssens")
    with pytest.raises(WeakPassword):
        await accounts.register_by_admin(a.app, reg, "short", DESK, None)
    with pytest.raises(WeakPassword):
        await accounts.register_by_admin(a.app, reg, "dr.janssens-1234", DESK, None)
    assert a.store.committed == [] and a.credentials.hashes == {}


async def test_a_username_is_taken_once(a: Accounts) -> None:
    await a.register("dr.peeters")
    with pytest.raises(UsernameTaken):
        await a.register("Dr.Peeters")
    assert len(a.of("UserRegistered")) == 1, "the unit of work left nothing of the second"


async def test_a_self_registration_waits_for_the_desk(a: Accounts) -> None:
    reg = Registration(username="dr.claes", first_name="Dr", last_name="Claes")
    user_id = await accounts.self_register(a.app, reg, PASSWORD, "10.0.0.1")
    assert a.users.users[user_id]["status"] == "pending"
    with pytest.raises(NotAllowed):
        await accounts.approve(a.app, user_id, who("usr_x", "physician"), None)
    await accounts.approve(a.app, user_id, DESK, None)
    assert [e["user_id"] for e in a.of("UserApproved")] == [user_id]


async def test_a_password_changes_with_the_current_one_only(a: Accounts) -> None:
    user_id = await a.register("dr.peeters")
    me = who(user_id, "physician")
    with pytest.raises(InvalidCredentials):
        await accounts.change_password(a.app, me, "not it", "a new long secret", "10.0.0.9")
    [failed] = a.of("LoginFailed")  # a wrong guess, counted and recorded as a failed login's
    assert (failed["user_id"], failed["consecutive_failures"]) == (user_id, 1)
    assert a.throttle.failures == {"user:dr.peeters": 1, "ip:10.0.0.9": 1}
    with pytest.raises(WeakPassword):
        await accounts.change_password(a.app, me, PASSWORD, "dr.peeters-2026!", None)
    assert a.throttle.failures == {"ip:10.0.0.9": 1}, "the right password reset the account's"
    await accounts.change_password(a.app, me, PASSWORD, "a new long secret", None)
    assert [e["changed_by"] for e in a.of("PasswordChanged")] == [user_id]
    assert await a.app.passwords.verify(a.credentials.hashes[user_id], "a new long secret")
    # their other sessions end (a stolen refresh token with them); tokens issued until now are
    # refused everywhere, this session refreshes its own
    assert a.sessions.revoked == [(user_id, "password_changed", "ses_mine")]
    assert [(e.kind, e.key, e.reason) for e in a.ends.ended] == [
        ("account", user_id, "the account's password was changed")
    ]


async def test_a_deactivated_account_ends_its_sessions(a: Accounts) -> None:
    user_id = await a.register("dr.peeters")
    with pytest.raises(NotAllowed):
        await accounts.deactivate(a.app, user_id, who("usr_x", "physician"), None)
    with pytest.raises(CannotDeactivateYourself):
        await accounts.deactivate(a.app, "usr_desk", DESK, None)
    await accounts.deactivate(a.app, user_id, DESK, None)
    assert [e["user_id"] for e in a.of("UserDeactivated")] == [user_id]
    assert a.sessions.revoked == [(user_id, "deactivated")]
    assert [(e.kind, e.key) for e in a.ends.ended] == [("account", user_id)]


async def test_only_the_desk_changes_roles(a: Accounts) -> None:
    user_id = await a.register("dr.peeters", "physician")
    with pytest.raises(NotAllowed):
        await accounts.set_roles(a.app, user_id, who(user_id, "physician"), None, roles=("x",))
    user = await accounts.set_roles(
        a.app,
        user_id,
        DESK,
        None,
        roles=("physician", "department_staff"),
        department_ids=("dep_1",),
    )
    [changed] = a.of("UserRolesChanged")
    assert changed["roles"] == ["physician", "department_staff"]
    assert user.version == 2
    # a token carries roles and memberships: those issued until now are refused everywhere (the
    # session lives on; a refresh gives a token with the new ones)
    assert [(e.kind, e.key) for e in a.ends.ended] == [("account", user_id)]
    assert "roles changed" in a.ends.ended[0].reason and a.sessions.revoked == []
