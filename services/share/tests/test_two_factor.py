"""Issue 4, point 4: two-factor buckets, OTP by SMS (sealed for notify), expiry, single use,
OTPFailed per wrong code, BucketLocked at the 5th in a row (also under concurrency), unlock."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from studyshare.plumbing.sealing import DEV_PRIVATE_KEY, unseal


async def two_factor_bucket(env, **body) -> str:
    out = await env.share(two_factor=True, **body)
    return out["bucket_id"]


async def request_code(env, bucket_id: str, user: str = "usr_r1") -> str:
    response = await env.client.post(f"/api/shares/{bucket_id}/otp", headers=env.as_(user))
    assert response.status_code == 202, response.text
    [requested] = await env.events(aggregate_id=bucket_id, event_type="OTPRequested")
    return unseal(requested["payload"]["sealed_code"], DEV_PRIVATE_KEY)


async def verify(env, bucket_id: str, code: str, user: str = "usr_r1"):
    return await env.client.post(
        f"/api/shares/{bucket_id}/otp/verify", json={"code": code}, headers=env.as_(user)
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_otp_is_sealed_for_notify_and_never_stored_in_clear(env):
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    assert len(code) == 6 and code.isdigit()
    [event] = await env.events(event_type="OTPRequested")
    assert event["payload"]["recipient_id"] == "usr_r1"
    assert event["payload"]["language"] == "nl"
    assert code not in str(event)
    stored = await env.db.otp_codes.find_one({})
    assert code not in str(stored) and len(stored["mac"]) == 64


async def test_correct_code_opens_the_bucket_once_and_is_never_accepted_twice(env):
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    ok = await verify(env, bucket_id, code)
    assert ok.status_code == 200, ok.text
    assert ok.json()["verified_until"]
    again = await verify(env, bucket_id, code)
    assert again.status_code == 401 and again.json()["rule"] == "WrongOTP"
    assert await env.count(event_type="OTPVerified") == 1
    assert await env.count(event_type="OTPFailed") == 1


async def test_expired_code_is_refused(env):
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    env.clock.now += timedelta(seconds=env.service.settings.otp_ttl_seconds + 1)
    late = await verify(env, bucket_id, code)
    assert late.status_code == 401 and late.json()["rule"] == "WrongOTP"
    assert await env.count(event_type="OTPVerified") == 0


async def test_a_group_member_asks_and_verifies_for_a_group_share(env):
    bucket_id = await two_factor_bucket(env, recipients=[{"kind": "group", "id": "grp_1"}])
    code = await request_code(env, bucket_id, user="usr_g2")
    assert (await verify(env, bucket_id, code, user="usr_g2")).status_code == 200


async def test_only_recipients_may_ask_for_a_code(env):
    bucket_id = await two_factor_bucket(env)
    response = await env.client.post(f"/api/shares/{bucket_id}/otp", headers=env.as_("usr_r2"))
    assert response.status_code == 404
    assert await env.count(event_type="OTPRequested") == 0


async def test_no_code_without_two_factor_or_without_mobile(env):
    plain = (await env.share(two_factor=False))["bucket_id"]
    response = await env.client.post(f"/api/shares/{plain}/otp", headers=env.as_("usr_r1"))
    assert response.json()["rule"] == "TwoFactorNotRequired"
    bucket_id = await two_factor_bucket(env, recipients=[{"kind": "user", "id": "usr_nomobile"}])
    response = await env.client.post(
        f"/api/shares/{bucket_id}/otp", headers=env.as_("usr_nomobile")
    )
    assert response.status_code == 422 and response.json()["rule"] == "NoRegisteredMobile"
    assert await env.count(event_type="OTPRequested") == 0


async def test_fifth_wrong_code_in_a_row_locks_and_every_later_attempt_answers_423(env):
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    statuses = [(await verify(env, bucket_id, wrong(code))).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 423]
    failed = await env.events(event_type="OTPFailed")
    assert [e["payload"]["consecutive_failures"] for e in failed] == [1, 2, 3, 4, 5]
    [locked] = await env.events(event_type="BucketLocked")
    assert locked["payload"]["sending_department_id"] == "dep_1"
    later = await verify(env, bucket_id, code)  # even the right code
    assert later.status_code == 423 and later.json()["rule"] == "BucketIsLocked"
    asked = await env.client.post(f"/api/shares/{bucket_id}/otp", headers=env.as_("usr_r1"))
    assert asked.status_code == 423
    assert await env.count(event_type="OTPFailed") == 5


async def test_a_correct_code_resets_the_run_of_wrong_codes(env):
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    for _ in range(4):
        await verify(env, bucket_id, wrong(code))
    assert (await verify(env, bucket_id, code)).status_code == 200
    response = await env.client.post(f"/api/shares/{bucket_id}/otp", headers=env.as_("usr_r1"))
    assert response.status_code == 202
    for _ in range(4):
        assert (await verify(env, bucket_id, "000000x")).status_code == 401
    assert await env.count(event_type="BucketLocked") == 0


async def test_parallel_wrong_codes_lock_after_exactly_five(env):
    """20 concurrent wrong codes: exactly 5 OTPFailed, one BucketLocked, the rest 423."""
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    responses = await asyncio.gather(*(verify(env, bucket_id, wrong(code)) for _ in range(20)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {401: 4, 423: 16}, statuses
    failed = await env.events(aggregate_id=bucket_id, event_type="OTPFailed")
    assert sorted(e["payload"]["consecutive_failures"] for e in failed) == [1, 2, 3, 4, 5]
    assert await env.count(aggregate_id=bucket_id, event_type="BucketLocked") == 1
    versions = [e["aggregate_version"] for e in await env.events(aggregate_id=bucket_id)]
    assert sorted(versions) == list(range(1, len(versions) + 1))


async def test_only_service_desk_or_admin_of_sending_department_unlocks(env):
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    for _ in range(5):
        await verify(env, bucket_id, wrong(code))
    for who, roles in (("usr_sender", ()), ("usr_r1", ()), ("usr_staff2", ("department_admin",))):
        refused = await env.client.post(
            f"/api/shares/{bucket_id}/unlock", headers=env.as_(who, *roles)
        )
        assert refused.status_code == 403 and refused.json()["rule"] == "NotAllowedToUnlock"
    assert await env.count(event_type="BucketUnlocked") == 0
    admin = await env.client.post(
        f"/api/shares/{bucket_id}/unlock",
        headers=env.as_("usr_admin", "department_admin", admin_of=["dep_1"]),
    )
    assert admin.status_code == 200 and admin.json()["locked"] is False
    [unlocked] = await env.events(event_type="BucketUnlocked")
    assert unlocked["payload"]["unlocked_as"] == "department_admin"
    assert (await verify(env, bucket_id, code)).status_code == 200
    again = await env.client.post(
        f"/api/shares/{bucket_id}/unlock", headers=env.as_("usr_desk", "service_desk")
    )
    assert again.status_code == 409 and again.json()["rule"] == "BucketNotLocked"


async def test_service_desk_unlocks(env):
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    for _ in range(5):
        await verify(env, bucket_id, wrong(code))
    desk = await env.client.post(
        f"/api/shares/{bucket_id}/unlock", headers=env.as_("usr_desk", "service_desk")
    )
    assert desk.status_code == 200
    [unlocked] = await env.events(event_type="BucketUnlocked")
    assert unlocked["payload"]["unlocked_as"] == "service_desk"


async def test_asking_too_often_is_refused_with_retry_after_and_no_event(env):
    """Issue 15, point 2: rate limit per recipient and bucket; a new code voids the old."""
    bucket_id = await two_factor_bucket(env)
    first = await request_code(env, bucket_id)
    for _ in range(env.service.settings.otp_requests_per_window - 1):
        asked = await env.client.post(f"/api/shares/{bucket_id}/otp", headers=env.as_("usr_r1"))
        assert asked.status_code == 202
    refused = await env.client.post(f"/api/shares/{bucket_id}/otp", headers=env.as_("usr_r1"))
    assert refused.status_code == 429 and refused.json()["rule"] == "OTPRequestedTooOften"
    assert int(refused.headers["retry-after"]) > 0
    assert (
        await env.count(event_type="OTPRequested") == env.service.settings.otp_requests_per_window
    )
    assert await env.db.otp_codes.count_documents({}) == 1, "only the newest code is kept"
    voided = await verify(env, bucket_id, first)
    assert voided.status_code == 401 and voided.json()["rule"] == "WrongOTP"


async def test_the_code_is_recorded_for_the_session_that_entered_it(env):
    bucket_id = await two_factor_bucket(env)
    code = await request_code(env, bucket_id)
    entered = await env.client.post(
        f"/api/shares/{bucket_id}/otp/verify",
        json={"code": code},
        headers=env.as_("usr_r1", sid="ses_a"),
    )
    assert entered.status_code == 200, entered.text
    [verified] = await env.events(event_type="OTPVerified")
    assert verified["payload"]["session_id"] == "ses_a"


async def test_no_code_goes_to_a_new_mobile_number_within_the_hold(env):
    """A stolen password and a code to the thief's own phone moved the recipient's mobile
    number, and with it the second factor: the next bucket code went to that phone. Codes go
    to a new number only after a day, in which the previous number was told of the change."""
    from studyshare.contracts.events.identity import UserProfileChanged

    bucket_id = await two_factor_bucket(env)
    await env.seed(UserProfileChanged(user_id="usr_r1", mobile="+32479999999"))
    held = await env.client.post(f"/api/shares/{bucket_id}/otp", headers=env.as_("usr_r1"))
    assert held.status_code == 403 and held.json()["rule"] == "MobileRecentlyChanged", held.text
    assert await env.count(event_type="OTPRequested") == 0 and not await env.db.otp_codes.find_one()
    await env.seed(UserProfileChanged(user_id="usr_r2", language="de"))  # no new number
    env.clock.now += timedelta(hours=24, seconds=1)
    assert await request_code(env, bucket_id)
