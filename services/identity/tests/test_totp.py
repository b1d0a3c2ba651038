"""Issue point 2: optional TOTP second factor, otpauth enrolment, codes made by `oathtool`,
never the same time step twice."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pyotp

from studyshare.identity.domain.totp import matching_step

from .conftest import FakeClock


def oathtool(secret: str, at: datetime | None = None) -> str:
    argv = ["oathtool", "--totp", "-b", secret]
    if at is not None:
        argv += ["--now", at.strftime("%Y-%m-%d %H:%M:%S UTC")]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


PASSWORD = {"current_password": "a-long-password-1"}


async def enrol(api, clock: FakeClock) -> tuple[str, dict[str, str]]:
    await api.register(await api.desk(), username="dr.totp")
    me = await api.headers("dr.totp", "a-long-password-1")
    enrolment = (await api.client.post("/api/users/me/totp", json=PASSWORD, headers=me)).json()
    uri = urlparse(enrolment["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [enrolment["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["StudyShare"]
    confirm = await api.client.post(
        "/api/users/me/totp/confirm",
        json={"code": oathtool(enrolment["secret"], clock.now)},
        headers=me,
    )
    assert confirm.status_code == 204, confirm.text
    return enrolment["secret"], me


async def test_totp_codes_from_oathtool_log_in_and_the_same_step_is_never_accepted_twice(api):
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC))
    api.identity.clock = clock
    secret, _ = await enrol(api, clock)
    assert len(await api.events("TOTPEnabled")) == 1
    clock.now += timedelta(seconds=30)
    missing = await api.login("dr.totp", "a-long-password-1")
    assert missing.status_code == 401 and missing.json()["rule"] == "TOTPRequired"
    code = oathtool(secret, clock.now)
    ok = await api.login("dr.totp", "a-long-password-1", otp=code)
    assert ok.status_code == 200, ok.text
    replay = await api.login("dr.totp", "a-long-password-1", otp=code)
    assert replay.status_code == 401 and replay.json()["rule"] == "InvalidCredentials"
    previous_step = oathtool(secret, clock.now - timedelta(seconds=30))
    older = await api.login("dr.totp", "a-long-password-1", otp=previous_step)
    assert older.status_code == 401, "a step before the last used one is refused too"
    clock.now += timedelta(seconds=30)
    assert (
        await api.login("dr.totp", "a-long-password-1", otp=oathtool(secret, clock.now))
    ).status_code == 200
    methods = [e.payload["method"] for e in await api.events("LoginSucceeded")]
    assert methods.count("password+totp") == 2
    assert [e.payload["reason"] for e in await api.events("LoginFailed")].count("bad_totp") == 2


async def test_a_wrong_code_does_not_enable_totp_and_enabling_twice_is_refused(api):
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC))
    api.identity.clock = clock
    await api.register(await api.desk(), username="dr.other")
    me = await api.headers("dr.other", "a-long-password-1")
    no_enrolment = await api.client.post(
        "/api/users/me/totp/confirm", json={"code": "123456"}, headers=me
    )
    assert no_enrolment.status_code == 409 and no_enrolment.json()["rule"] == "TOTPEnrolmentMissing"
    secret = (await api.client.post("/api/users/me/totp", json=PASSWORD, headers=me)).json()[
        "secret"
    ]
    wrong = oathtool(secret, clock.now + timedelta(minutes=5))
    refused = await api.client.post("/api/users/me/totp/confirm", json={"code": wrong}, headers=me)
    assert refused.status_code == 403 and refused.json()["rule"] == "InvalidTOTPCode"
    assert (await api.login("dr.other", "a-long-password-1")).status_code == 200, "still no TOTP"
    ok = await api.client.post(
        "/api/users/me/totp/confirm", json={"code": oathtool(secret, clock.now)}, headers=me
    )
    assert ok.status_code == 204
    twice = await api.client.post("/api/users/me/totp", json=PASSWORD, headers=me)
    assert twice.status_code == 409 and twice.json()["rule"] == "TOTPAlreadyEnabled"


def test_matching_step_accepts_one_step_either_side_and_never_a_used_step():
    secret = pyotp.random_base32()
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    step = pyotp.TOTP(secret).timecode(now)
    for delta in (-1, 0, 1):
        code = oathtool(secret, now + timedelta(seconds=30 * delta))
        assert matching_step(secret, code, now, None) == step + delta
        assert matching_step(secret, code, now, step + delta) is None
    far = oathtool(secret, now + timedelta(seconds=90))
    assert matching_step(secret, far, now, None) is None


async def test_two_concurrent_logins_with_the_same_code_let_exactly_one_in(api):
    import asyncio

    clock = FakeClock(datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC))
    api.identity.clock = clock
    secret, _ = await enrol(api, clock)
    clock.now += timedelta(seconds=30)
    code = oathtool(secret, clock.now)
    results = await asyncio.gather(
        *(api.login("dr.totp", "a-long-password-1", otp=code) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401]


async def test_only_the_account_holder_enrols_a_second_factor(api):
    """A holder of the access token alone (no password) cannot turn TOTP on and lock the
    account's owner out; nothing is stored when refused."""
    await api.register(await api.desk(), username="dr.stolen")
    token_only = await api.headers("dr.stolen", "a-long-password-1")
    for body, status, rule in (
        (None, 403, "CurrentPasswordRequired"),
        ({}, 403, "CurrentPasswordRequired"),
        ({"current_password": "not-the-password"}, 401, "InvalidCredentials"),
    ):
        refused = await api.client.post("/api/users/me/totp", json=body, headers=token_only)
        assert refused.status_code == status and refused.json()["rule"] == rule, refused.text
    user_id = (await api.identity.db.users.find_one({"username": "dr.stolen"}))["_id"]
    creds = await api.identity.db.credentials.find_one({"_id": user_id})
    assert creds is not None and creds.get("password_hash")
    assert "totp_pending_secret" not in creds
    confirm = await api.client.post(
        "/api/users/me/totp/confirm", json={"code": "123456"}, headers=token_only
    )
    assert confirm.json()["rule"] == "TOTPEnrolmentMissing"
    assert (await api.login("dr.stolen", "a-long-password-1")).status_code == 200
