"""Issue 15, point 2: two-factor.

- Changing one's mobile number (or e-mail, names, physician numbers) needs the current
  password and, for the mobile, a code sent to the new number; the old number is told.
- A verified two-factor bucket opens for the session that entered the code, not for 12 hours of
  any session of the recipient.
- Asking for a code is rate-limited, and a new code voids the previous one.
- A recipient who has not entered the code, or whose bucket is locked, cannot re-share from it.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from studyshare.devstack.platform import LocalPlatform

from ..storykit import (
    OTP_CODE,
    Gateway,
    Person,
    ok,
    problem,
    unique,
    wait_for,
)

BIRTH_DATE = "19750303"


@pytest.fixture(scope="module")
def cast(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    """A radiology department with a sending physician; two physicians outside it."""
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department_id = api.radiology_department(desk, f"Radiology {unique('')}")
    sender = api.register(desk, "Olga", roles=["physician"], department_ids=[department_id])
    return SimpleNamespace(desk=desk, department_id=department_id, sender=sender)


def physician(api: Gateway, cast: SimpleNamespace, name: str, **fields) -> Person:
    return api.register(cast.desk, name, roles=["physician"], **fields)


def user(person: Person) -> dict[str, str]:
    return {"kind": "user", "id": person.user_id}


def two_factor_bucket(api: Gateway, cast: SimpleNamespace, *recipients: Person, **body) -> tuple:
    study = api.upload(cast.sender, "MR knee", "Security^Bob", BIRTH_DATE)
    bucket_id = api.shared(
        cast.sender,
        study_uids=[study.study_uid],
        recipients=[user(r) for r in recipients],
        access_level="images_report_read",
        two_factor=True,
        send_mail=False,
        **body,
    )
    return study.study_uid, bucket_id


def other_session(api: Gateway, person: Person) -> dict[str, str]:
    """A second login of the same account: another session."""
    return api.login(person.username, person.password)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def new_sms(api: Gateway, mobile: str, before: set[str], what: str) -> str:
    texts = wait_for(lambda: [s["text"] for s in api.sms_to(mobile) if s["id"] not in before], what)
    return texts[0]


# ------------------------------------------------------------------------ profile changes


def test_changing_names_email_or_physician_numbers_needs_the_current_password(
    api: Gateway, cast: SimpleNamespace
):
    me = physician(api, cast, "Hugo")
    changes = [
        {"first_name": "Mallory"},
        {"last_name": "Mallory"},
        {"email": f"mallory.{unique('')}@attacker.test"},
        {"physician_numbers": [{"registry": "RIZIV", "number": "1-66666-66-666"}]},
    ]
    for change in changes:
        problem(
            api.client.patch("/api/users/me", json=change, headers=me.headers),
            403,
            "CurrentPasswordRequired",
        )
        problem(
            api.client.patch(
                "/api/users/me",
                json={**change, "current_password": "not-the-password-1"},
                headers=me.headers,
            ),
            401,
            "InvalidCredentials",
        )
    unchanged = ok(api.client.get("/api/users/me", headers=me.headers))
    assert unchanged["first_name"] == "Hugo" and unchanged["email"] == me.email
    assert unchanged["physician_numbers"] == []

    # what is not about who one is still changes without the password
    ok(api.client.patch("/api/users/me", json={"language": "de"}, headers=me.headers))
    changed = ok(
        api.client.patch(
            "/api/users/me",
            json={"first_name": "Hugues", "current_password": me.password},
            headers=me.headers,
        )
    )
    assert changed["first_name"] == "Hugues" and changed["language"] == "de"


def test_changing_the_mobile_needs_the_password_and_a_code_sent_to_the_new_number(
    api: Gateway, cast: SimpleNamespace
):
    me = physician(api, cast, "Iris", language="nl")
    new_mobile = f"+3248{int(unique(''), 16) % 10**7:07d}"

    # a stolen session alone can no longer move the second factor to the attacker's phone
    problem(
        api.client.patch("/api/users/me", json={"mobile": new_mobile}, headers=me.headers),
        422,
        "MobileChangeNeedsCode",
    )
    problem(
        api.client.patch(
            "/api/users/me",
            json={"mobile": new_mobile, "current_password": me.password},
            headers=me.headers,
        ),
        422,
        "MobileChangeNeedsCode",
    )
    problem(
        api.client.post("/api/users/me/mobile", json={"mobile": new_mobile}, headers=me.headers),
        403,
        "CurrentPasswordRequired",
    )
    problem(
        api.client.post(
            "/api/users/me/mobile",
            json={"mobile": new_mobile, "current_password": "not-the-password-1"},
            headers=me.headers,
        ),
        401,
        "InvalidCredentials",
    )
    assert ok(api.client.get("/api/users/me", headers=me.headers))["mobile"] == me.mobile

    before_old = {s["id"] for s in api.sms_to(me.mobile)}
    ok(
        api.client.post(
            "/api/users/me/mobile",
            json={"mobile": new_mobile, "current_password": me.password},
            headers=me.headers,
        ),
        202,
    )
    text = new_sms(api, new_mobile, set(), "the code SMS to the new number")
    match = OTP_CODE.search(text)
    assert match, text
    code = match.group(1)
    assert ok(api.client.get("/api/users/me", headers=me.headers))["mobile"] == me.mobile

    problem(
        api.client.post(
            "/api/users/me/mobile/confirm", json={"code": wrong(code)}, headers=me.headers
        ),
        403,
        "WrongMobileChangeCode",
    )
    confirmed = ok(
        api.client.post("/api/users/me/mobile/confirm", json={"code": code}, headers=me.headers)
    )
    assert confirmed["mobile"] == new_mobile
    problem(  # single use
        api.client.post("/api/users/me/mobile/confirm", json={"code": code}, headers=me.headers),
        403,
        "WrongMobileChangeCode",
    )

    notice = new_sms(api, me.mobile, before_old, "the notice to the old number")
    assert new_mobile not in notice and code not in notice
    assert "StudyShare" in notice and not OTP_CODE.search(notice), notice

    # no bucket code goes to the new number for a day: the password and a phone of one's own
    # moved it, so a stolen password alone would move the second factor (share's unit tests
    # see the codes go to it after the hold)
    _, bucket_id = two_factor_bucket(api, cast, me)
    for _ in range(3):  # the share service learns of the new number from identity's events
        held = api.client.post(f"/api/shares/{bucket_id}/otp", headers=me.headers)
        if held.status_code != 202:
            break
        time.sleep(1)
    problem(held, 403, "MobileRecentlyChanged")


# ------------------------------------------------------------------------ verified per session


def test_a_verified_bucket_opens_only_for_the_session_that_entered_the_code(
    api: Gateway, cast: SimpleNamespace
):
    reader = physician(api, cast, "Jules")
    uid, bucket_id = two_factor_bucket(api, cast, reader)
    elsewhere = other_session(api, reader)
    ok(api.verify_otp(reader, bucket_id, api.request_otp(reader, bucket_id)))
    wait_for(lambda: api.study(reader, uid).status_code == 200, "access in the verifying session")
    problem(api.study(elsewhere, uid), 403, "TwoFactorVerificationRequired")
    problem(
        api.client.get(f"/dicomweb/studies/{uid}/metadata", headers=elsewhere),
        403,
        "TwoFactorVerificationRequired",
    )
    assert api.study(reader, uid).status_code == 200


# ------------------------------------------------------------------------ asking for codes


def test_a_new_code_voids_the_previous_one(api: Gateway, cast: SimpleNamespace):
    reader = physician(api, cast, "Karel")
    uid, bucket_id = two_factor_bucket(api, cast, reader)
    first = api.request_otp(reader, bucket_id)
    second = api.request_otp(reader, bucket_id)
    if first == second:  # one chance in a million
        pytest.skip("both codes happen to be equal")
    problem(api.verify_otp(reader, bucket_id, first), 401, "WrongOTP")
    ok(api.verify_otp(reader, bucket_id, second))
    wait_for(lambda: api.study(reader, uid).status_code == 200, "access with the newest code")


def test_asking_for_a_code_is_rate_limited(api: Gateway, cast: SimpleNamespace):
    reader = physician(api, cast, "Lotte")
    _, bucket_id = two_factor_bucket(api, cast, reader)
    statuses = [
        api.client.post(f"/api/shares/{bucket_id}/otp", headers=reader.headers).status_code
        for _ in range(10)
    ]
    assert 429 in statuses, statuses
    first_refusal = statuses.index(429)
    assert first_refusal >= 1 and set(statuses[first_refusal:]) == {429}, statuses
    refused = api.client.post(f"/api/shares/{bucket_id}/otp", headers=reader.headers)
    problem(refused, 429, "OTPRequestedTooOften")
    assert refused.headers.get("retry-after"), refused.headers
    wait_for(lambda: len(api.sms_to(reader.mobile)) >= first_refusal, "the codes sent")
    assert len(api.sms_to(reader.mobile)) == first_refusal, "no SMS for a refused request"


# ------------------------------------------------------------------------ re-sharing


def test_a_recipient_cannot_reshare_before_entering_the_code_or_while_the_bucket_is_locked(
    api: Gateway, cast: SimpleNamespace
):
    reader, other, onward = (physician(api, cast, n) for n in ("Mila", "Nora", "Otto"))
    uid, bucket_id = two_factor_bucket(api, cast, reader, other, allow_further_sharing=True)
    reshare = {
        "study_uids": [uid],
        "recipients": [user(onward)],
        "access_level": "images_report_read",
        "two_factor": True,
        "send_mail": False,
        "parent_bucket_id": bucket_id,
    }
    problem(api.share(reader, **reshare), 403, "TwoFactorVerificationRequired")
    without_parent = {k: v for k, v in reshare.items() if k != "parent_bucket_id"}
    problem(api.share(reader, **without_parent), 403, "TwoFactorVerificationRequired")

    elsewhere = other_session(api, reader)
    ok(api.verify_otp(reader, bucket_id, api.request_otp(reader, bucket_id)))
    problem(  # the code was entered in another session
        api.client.post("/api/shares", json=_share_body(reshare), headers=elsewhere),
        403,
        "TwoFactorVerificationRequired",
    )
    ok(api.share(reader, **reshare), 201)

    code = api.request_otp(other, bucket_id)
    for _ in range(4):
        problem(api.verify_otp(other, bucket_id, wrong(code)), 401, "WrongOTP")
    problem(api.verify_otp(other, bucket_id, wrong(code)), 423, "BucketIsLocked")
    problem(api.share(reader, **reshare), 423, "BucketIsLocked")


def _share_body(body: dict) -> dict:
    return {"reason": "second opinion", "patient_agreed": True, **body}
