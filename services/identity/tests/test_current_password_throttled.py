"""Guesses at the current password by a holder of the account's token (changing the profile,
the mobile, the password, enrolling TOTP) pass the same failure counters as a login: per
account name and per source, one budget, the same lock and the same answer while locked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .conftest import FakeClock

PASSWORD = "a-long-password-1"
MOBILE = "+32 475 12 34 56"
NEW_MOBILE = "+32 470 99 88 77"


async def holder(api, username: str) -> tuple[str, dict[str, str]]:
    """A physician with a mobile number, and the headers of their (stolen) access token."""
    user_id = await api.register(await api.desk(), username=username, mobile=MOBILE)
    return user_id, await api.headers(username, PASSWORD)


async def ask_mobile(api, me: dict[str, str], current_password: str, **headers: str):
    return await api.client.post(
        "/api/users/me/mobile",
        json={"mobile": NEW_MOBILE, "current_password": current_password},
        headers=me | headers,
    )


def refusal(response) -> tuple[int, str]:
    return response.status_code, response.json().get("rule")


async def test_guessing_the_current_password_locks_the_account_like_failed_logins(api):
    clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    api.identity.clock = clock
    user_id, me = await holder(api, "dr.stolen")
    threshold = api.identity.settings.account_lock_threshold
    for i in range(threshold):
        wrong = await ask_mobile(api, me, f"guess-number-{i}")
        assert refusal(wrong) == (401, "InvalidCredentials"), wrong.text

    right = await ask_mobile(api, me, PASSWORD)
    assert refusal(right) == (429, "LoginTemporarilyLocked"), right.text
    assert right.headers["retry-after"] == "30"
    assert (await api.client.get("/api/users/me", headers=me)).json()["mobile"] == MOBILE
    assert await api.events("MobileChangeRequested") == []

    # every route that asks for the current password is behind the same lock, and so is login
    others = (
        ("PATCH", "/api/users/me", {"first_name": "Mallory", "current_password": PASSWORD}),
        ("POST", "/api/users/me/totp", {"current_password": PASSWORD}),
        (
            "POST",
            "/api/users/me/password",
            {"current_password": PASSWORD, "new_password": "attackers-password-9"},
        ),
    )
    for method, path, body in others:
        answer = await api.client.request(method, path, json=body, headers=me)
        assert refusal(answer) == (429, "LoginTemporarilyLocked"), (path, answer.text)
    assert refusal(await api.login("dr.stolen", PASSWORD)) == (429, "LoginTemporarilyLocked")

    failed = await api.events("LoginFailed")
    assert [e.payload["consecutive_failures"] for e in failed] == list(range(1, threshold + 1))
    assert {(e.payload["user_id"], e.payload["reason"]) for e in failed} == {
        (user_id, "bad_credentials")
    }
    assert {e.actor.id for e in failed} == {user_id}, "the token's holder made the guesses"
    [lock] = await api.events("AccountLocked")
    assert lock.payload["user_id"] == user_id and lock.payload["consecutive_failures"] == threshold

    clock.now += timedelta(seconds=31)
    me = await api.headers("dr.stolen", PASSWORD)  # nothing changed: the old password works
    profile = (await api.client.get("/api/users/me", headers=me)).json()
    assert profile["first_name"] == "Jan" and profile["mobile"] == MOBILE
    assert await api.events("TOTPEnabled") == []


async def test_current_password_guesses_and_failed_logins_share_one_budget(api):
    api.identity.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    _, me = await holder(api, "dr.mixed")
    guesses = [
        lambda: api.login("dr.mixed", "wrong-login-1"),
        lambda: ask_mobile(api, me, "wrong-current-1"),
        lambda: api.login("dr.mixed", "wrong-login-2"),
        lambda: api.client.post(
            "/api/users/me/password",
            json={"current_password": "wrong-current-2", "new_password": "attackers-password-9"},
            headers=me,
        ),
        lambda: api.client.post(
            "/api/users/me/totp", json={"current_password": "wrong-current-3"}, headers=me
        ),
    ]
    assert len(guesses) == api.identity.settings.account_lock_threshold
    for guess in guesses:
        assert refusal(await guess()) == (401, "InvalidCredentials")
    assert refusal(await ask_mobile(api, me, PASSWORD)) == (429, "LoginTemporarilyLocked")
    assert refusal(await api.login("dr.mixed", PASSWORD)) == (429, "LoginTemporarilyLocked")
    failed = await api.events("LoginFailed")
    assert [e.payload["consecutive_failures"] for e in failed] == [1, 2, 3, 4, 5]


async def test_current_password_guesses_count_against_their_source_too(make_api):
    api = await make_api(source_lock_threshold=3)
    api.identity.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    _, first = await holder(api, "dr.first")
    _, second = await holder(api, "dr.second")
    attacker = {"x-forwarded-for": "203.0.113.7"}
    for me, guess in ((first, "wrong-1"), (second, "wrong-2"), (first, "wrong-3")):
        assert refusal(await ask_mobile(api, me, guess, **attacker)) == (401, "InvalidCredentials")
    locked = await ask_mobile(api, second, PASSWORD, **attacker)
    assert refusal(locked) == (429, "LoginTemporarilyLocked"), "the source is locked"
    elsewhere = await ask_mobile(api, second, PASSWORD, **{"x-forwarded-for": "198.51.100.2"})
    assert elsewhere.status_code == 202, elsewhere.text
    assert {e.payload["source_ip"] for e in await api.events("LoginFailed")} == {"203.0.113.7"}


async def test_the_right_current_password_before_the_limit_works_and_resets_the_count(api):
    api.identity.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    _, me = await holder(api, "dr.forgetful")
    threshold = api.identity.settings.account_lock_threshold
    for i in range(threshold - 1):
        assert refusal(await ask_mobile(api, me, f"typo-{i}")) == (401, "InvalidCredentials")
    right = await ask_mobile(api, me, PASSWORD)
    assert right.status_code == 202, right.text
    assert len(await api.events("MobileChangeRequested")) == 1
    for i in range(threshold - 1):
        assert refusal(await ask_mobile(api, me, f"typo-again-{i}")) == (
            401,
            "InvalidCredentials",
        ), "a success resets the account's count, as a login does"
    assert (await api.login("dr.forgetful", PASSWORD)).status_code == 200
    assert await api.events("AccountLocked") == []
