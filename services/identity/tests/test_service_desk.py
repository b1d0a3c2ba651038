"""Service-desk operations around logins: a forgotten password, a lost second factor and a
brute-force lock, each an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .conftest import FakeClock
from .test_totp import enrol, oathtool


async def test_the_service_desk_resets_a_password_and_every_session_ends(api):
    desk = await api.desk()
    user_id = await api.register(desk, username="dr.forgetful")
    tokens = (await api.login("dr.forgetful", "a-long-password-1")).json()
    reset = await api.client.post(
        f"/api/users/{user_id}/password", json={"new_password": "a-brand-new-one-2"}, headers=desk
    )
    assert reset.status_code == 204
    stale = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await api.client.get("/api/users/me", headers=stale)).status_code == 401
    assert (await api.login("dr.forgetful", "a-long-password-1")).status_code == 401
    assert (await api.login("dr.forgetful", "a-brand-new-one-2")).status_code == 200
    [changed] = await api.events("PasswordChanged")
    assert changed.payload["user_id"] == user_id and changed.payload["changed_by"] != user_id
    me = await api.headers("dr.forgetful", "a-brand-new-one-2")
    refused = await api.client.post(
        f"/api/users/{user_id}/password", json={"new_password": "x" * 12}, headers=me
    )
    assert refused.status_code == 403


async def test_the_service_desk_removes_a_lost_second_factor(api):
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC))
    api.identity.clock = clock
    secret, _ = await enrol(api, clock)
    desk = await api.desk()
    user_id = (await api.identity.db.users.find_one({"username": "dr.totp"}))["_id"]
    assert (await api.login("dr.totp", "a-long-password-1")).json()["rule"] == "TOTPRequired"
    removed = await api.client.delete(f"/api/users/{user_id}/totp", headers=desk)
    assert removed.status_code == 204
    assert (await api.login("dr.totp", "a-long-password-1")).status_code == 200
    again = await api.client.delete(f"/api/users/{user_id}/totp", headers=desk)
    assert again.status_code == 409 and again.json()["rule"] == "TOTPNotEnabled"
    assert [e.payload["user_id"] for e in await api.events("TOTPDisabled")] == [user_id]
    # enrolling anew works, and codes of steps already used stay spent
    me = await api.headers("dr.totp", "a-long-password-1")
    again = {"current_password": "a-long-password-1"}
    fresh = (await api.client.post("/api/users/me/totp", json=again, headers=me)).json()["secret"]
    clock.now += timedelta(seconds=30)
    ok = await api.client.post(
        "/api/users/me/totp/confirm", json={"code": oathtool(fresh, clock.now)}, headers=me
    )
    assert ok.status_code == 204
    assert secret != fresh


async def test_the_service_desk_lifts_a_brute_force_lock(api):
    api.identity.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    desk = await api.desk()
    user_id = await api.register(desk, username="dr.locked")
    for _ in range(5):
        await api.login("dr.locked", "wrong-password")
    assert (await api.login("dr.locked", "a-long-password-1")).status_code == 429
    unlocked = await api.client.post(f"/api/users/{user_id}/unlock", headers=desk)
    assert unlocked.status_code == 204
    assert (await api.login("dr.locked", "a-long-password-1")).status_code == 200
    assert [e.payload["user_id"] for e in await api.events("AccountUnlocked")] == [user_id]
