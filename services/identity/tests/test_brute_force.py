"""Issue point 3: failures counted per account and per source, lockout with increasing delay,
answers that never reveal whether an account exists."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from studyshare.identity.domain.lockout import LockoutPolicy
from studyshare.plumbing.client_address import ADDRESS, forwarded_address, vouched

from .conftest import FakeClock


def test_the_lock_delay_doubles_with_every_failure_past_the_threshold():
    policy = LockoutPolicy(threshold=5, base_s=30, max_s=600)
    assert [policy.delay_after(n) for n in range(1, 10)] == [0, 0, 0, 0, 30, 60, 120, 240, 480]
    assert policy.delay_after(20) == 600


def test_a_failure_count_decays_after_a_quiet_period_counted_from_the_end_of_its_lock():
    policy = LockoutPolicy(threshold=5, base_s=30, max_s=600, decay_s=900)
    now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    assert not policy.forgets(None, None, now)
    assert not policy.forgets(now - timedelta(seconds=899), None, now)
    assert policy.forgets(now - timedelta(seconds=900), None, now)
    long_lock = now - timedelta(seconds=100)
    assert not policy.forgets(now - timedelta(hours=2), long_lock, now), "locked until recently"
    assert policy.forgets(now - timedelta(hours=2), now - timedelta(seconds=901), now)
    assert policy.forgotten_before(now) == now - timedelta(seconds=900)


def test_guesses_left_up_to_the_threshold_then_one_per_ended_lock():
    policy = LockoutPolicy(threshold=5)
    assert [policy.attempts_left(n) for n in range(0, 8)] == [5, 4, 3, 2, 1, 1, 1, 1]


async def test_twenty_guesses_at_once_are_evaluated_at_most_five_times(api):
    """Checking the lock and counting the failure are one step: guesses racing each other
    cannot all pass the check before any of them is counted."""
    await api.register(await api.desk(), username="dr.raced")
    calls: list[str] = []
    original = api.identity.passwords.hasher

    class Spy:
        def verify(self, hashed, password):
            calls.append(password)
            return original.verify(hashed, password)

    api.identity.passwords.hasher = Spy()
    answers = await asyncio.gather(*(api.login("dr.raced", f"wrong-{i}") for i in range(20)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * 5 + [429] * 15, statuses
    assert len(calls) == 5
    failed = await api.events("LoginFailed")
    assert sorted(e.payload["consecutive_failures"] for e in failed) == [1, 2, 3, 4, 5]
    [lock] = await api.events("AccountLocked")
    assert lock.payload["consecutive_failures"] == 5


async def test_a_quiet_account_starts_counting_again(api):
    clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    api.identity.clock = clock
    await api.register(await api.desk(), username="dr.quiet")
    for _ in range(4):
        assert (await api.login("dr.quiet", "wrong-password")).status_code == 401
    clock.now += timedelta(seconds=api.identity.settings.failure_decay_s + 1)
    for _ in range(4):
        assert (await api.login("dr.quiet", "wrong-password")).status_code == 401, (
            "the four old failures were forgotten"
        )
    failed = await api.events("LoginFailed")
    assert [e.payload["consecutive_failures"] for e in failed] == [1, 2, 3, 4, 1, 2, 3, 4]


def _shape(response):
    body = response.json()
    return response.status_code, body["rule"], body["detail"], body["title"]


async def test_an_account_is_locked_with_increasing_delay_and_answers_never_reveal_existence(api):
    clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    api.identity.clock = clock
    user_id = await api.register(await api.desk(), username="dr.real")
    calls: list[str] = []
    original = api.identity.passwords.hasher

    class Spy:
        def verify(self, hashed, password):
            calls.append(hashed)
            return original.verify(hashed, password)

    api.identity.passwords.hasher = Spy()

    real, ghost = [], []
    for _ in range(4):
        real.append(
            await api.login(
                "dr.real",
                "wrong-password",
            )
        )
        ghost.append(await api.login("dr.ghost", "wrong-password"))
    assert (
        {_shape(r) for r in real}
        == {_shape(g) for g in ghost}
        == {
            (
                401,
                "InvalidCredentials",
                "The username, password or one-time code is not correct.",
                "Unauthorized",
            )
        }
    )
    assert len(calls) == 8 and api.identity.passwords.dummy_hash in calls, (
        "an unknown account is verified against the dummy hash (same cost)"
    )
    fifth_real = await api.login("dr.real", "wrong-password")
    fifth_ghost = await api.login("dr.ghost", "wrong-password")
    assert _shape(fifth_real) == _shape(fifth_ghost)
    locked_real = await api.login("dr.real", "a-long-password-1")
    locked_ghost = await api.login("dr.ghost", "a-long-password-1")
    assert _shape(locked_real) == _shape(locked_ghost)
    assert locked_real.status_code == 429 and locked_real.json()["rule"] == "LoginTemporarilyLocked"
    assert locked_real.headers["retry-after"] == locked_ghost.headers["retry-after"] == "30"

    [lock] = await api.events("AccountLocked")
    assert lock.payload["user_id"] == user_id and lock.payload["consecutive_failures"] == 5
    clock.now += timedelta(seconds=31)
    sixth = await api.login("dr.real", "wrong-password")
    assert sixth.status_code == 401
    relocked = await api.login("dr.real", "a-long-password-1")
    assert relocked.headers["retry-after"] == "60", "the delay doubles"
    clock.now += timedelta(seconds=61)
    assert (await api.login("dr.real", "a-long-password-1")).status_code == 200
    after_reset = await api.login("dr.real", "wrong-password")
    assert after_reset.status_code == 401
    assert (await api.login("dr.real", "a-long-password-1")).status_code == 200, (
        "a success resets the account's count"
    )
    failed = await api.events("LoginFailed")
    assert {e.payload["user_id"] for e in failed} == {user_id, None}
    assert not any(e.payload["reason"] == "locked" for e in failed), (
        "a login refused while locked writes no event"
    )


async def test_failures_from_one_source_lock_that_source_across_usernames(make_api):
    api = await make_api(source_lock_threshold=6)
    api.identity.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    await api.register(await api.desk(), username="dr.victim")
    attacker = {"x-forwarded-for": "203.0.113.7"}
    for i in range(6):
        # What the client itself puts in X-Forwarded-For changes nothing: the gateway appends
        # the address it saw, and only that entry is trusted.
        forged = {"x-forwarded-for": f"10.9.8.{i}, 203.0.113.7"}
        response = await api.client.post(
            "/api/auth/login", json={"username": f"guess{i}", "password": "x"}, headers=forged
        )
        assert response.status_code == 401
    blocked = await api.client.post(
        "/api/auth/login",
        json={"username": "dr.victim", "password": "a-long-password-1"},
        headers=attacker,
    )
    assert blocked.status_code == 429 and blocked.json()["rule"] == "LoginTemporarilyLocked"
    elsewhere = await api.client.post(
        "/api/auth/login",
        json={"username": "dr.victim", "password": "a-long-password-1"},
        headers={"x-forwarded-for": "198.51.100.2"},
    )
    assert elsewhere.status_code == 200, "another source is not affected"
    sources = {e.payload["source_ip"] for e in await api.events("LoginFailed")}
    assert sources == {"203.0.113.7"}


async def test_the_portal_vouches_for_each_browser_so_one_browser_locks_only_itself(make_api):
    """Every portal login reaches identity from the portal's one address: without the
    browser's address (vouched for with the portal's key) a stranger's failures would lock the
    per-source lockout for every portal user. A header not vouched for with the key, or too
    old, names nobody: the proxies' address counts."""
    key = "portal-client-key"
    api = await make_api(source_lock_threshold=6, portal_client_secret=key)
    api.identity.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    await api.register(await api.desk(), username="dr.victim")
    portal = {"x-forwarded-for": "192.0.2.10"}  # the gateway saw the portal

    def browser(address: str, at: float | None = None, secret: str = key) -> dict[str, str]:
        return portal | vouched(secret, address, time.time() if at is None else at)

    for i in range(6):
        response = await api.client.post(
            "/api/auth/login",
            json={"username": f"guess{i}", "password": "x"},
            headers=browser("203.0.113.7"),
        )
        assert response.status_code == 401
    victim = {"username": "dr.victim", "password": "a-long-password-1"}
    blocked = await api.client.post("/api/auth/login", json=victim, headers=browser("203.0.113.7"))
    assert blocked.status_code == 429 and blocked.json()["rule"] == "LoginTemporarilyLocked"
    other = await api.client.post("/api/auth/login", json=victim, headers=browser("198.51.100.2"))
    assert other.status_code == 200, "another browser through the same portal logs in"
    for unvouched in (
        browser("198.51.100.3", secret="not-the-key"),
        browser("198.51.100.3", at=time.time() - 120),
        portal | {ADDRESS: "198.51.100.3"},
    ):
        wrong = await api.client.post(
            "/api/auth/login", json={"username": "guess-x", "password": "x"}, headers=unvouched
        )
        assert wrong.status_code == 401
    sources = Counter(e.payload["source_ip"] for e in await api.events("LoginFailed"))
    assert sources == {"203.0.113.7": 6, "192.0.2.10": 3}


def test_the_caller_is_the_address_the_outermost_trusted_proxy_saw():
    assert forwarded_address("203.0.113.7", "10.0.0.5", trusted_proxies=1) == "203.0.113.7"
    assert forwarded_address("1.1.1.1, 203.0.113.7", "10.0.0.5", trusted_proxies=1) == "203.0.113.7"
    assert forwarded_address("1.1.1.1, 203.0.113.7, 10.0.0.9", None, trusted_proxies=2) == (
        "203.0.113.7"
    )
    assert forwarded_address("203.0.113.7", "10.0.0.5", trusted_proxies=3) == "203.0.113.7"
    assert forwarded_address("1.1.1.1", "10.0.0.5", trusted_proxies=0) == "10.0.0.5"
    assert forwarded_address(" , ", "10.0.0.5", trusted_proxies=1) == "10.0.0.5"


async def test_a_source_registers_only_so_many_accounts_before_it_waits(make_api):
    """Self-registration is anonymous: each call once cost an argon2 hash and a pending account
    (and perhaps a mail to the desk) without any limit."""
    api = await make_api(registrations_per_source=3)

    def body(n: int) -> dict:
        return {
            "username": f"self.reg{n}",
            "password": "a-long-password-1",
            "first_name": "Self",
            "last_name": "Registered",
            "email": f"self{n}@example.org",
        }

    here, elsewhere = {"x-forwarded-for": "203.0.113.9"}, {"x-forwarded-for": "198.51.100.4"}
    for n in range(3):
        made = await api.client.post("/api/users/register", json=body(n), headers=here)
        assert made.status_code == 201, made.text
    waits = await api.client.post("/api/users/register", json=body(3), headers=here)
    assert waits.status_code == 429 and waits.json()["rule"] == "RegistrationsTooOften"
    assert int(waits.headers["retry-after"]) > 0
    other = await api.client.post("/api/users/register", json=body(4), headers=elsewhere)
    assert other.status_code == 201, "another source registers"
    assert len(await api.events("UserRegistered")) == 1 + 4, "the desk and four"
