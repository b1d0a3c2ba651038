"""Issue point 7: patient login with reference number + date of birth (+ pincode after
payment, + SMS code); the token opens one study within the validity window; failures are
counted and limited."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.study import (
    PincodeSet,
    ReferenceNumberIssued,
    ReferenceNumberRevoked,
)
from studyshare.identity.entrypoints.projections import ReferenceNumbers
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.plumbing.sealing import DEV_PRIVATE_KEY, unseal

BIRTH = "1980-04-12"
NOW = datetime.now(UTC)


async def issue(api, number: str, version: int = 1, **fields):
    values = {
        "reference_number": number,
        "study_uid": f"1.2.826.0.1.{number}",
        "department_id": "dep_rx",
        "valid_from": NOW - timedelta(days=1),
        "valid_to": NOW + timedelta(days=10),
        "patient_birth_date": date.fromisoformat(BIRTH),
        "patient_mobile": "+32475000000",
    }
    values.update(fields)
    await feed(api, ReferenceNumberIssued(**values), f"ref_{number}", version)


async def feed(api, event, aggregate_id: str, version: int):
    runner = ProjectionRunner(ReferenceNumbers(), api.identity.db)
    envelope = envelope_for(
        event, aggregate_id=aggregate_id, aggregate_version=version, actor=Actor(id="usr_rx")
    )
    assert await runner.apply_batch([envelope]) == 1


async def patient_login(api, number: str, birth: str = BIRTH, **extra):
    return await api.client.post(
        "/api/auth/patient-login",
        json={"reference_number": number, "date_of_birth": birth, **extra},
    )


async def department(api, **policy) -> str:
    desk = await api.desk()
    created = await api.client.post(
        "/api/departments", json={"name": "RX", "policy": policy}, headers=desk
    )
    return created.json()["id"]


async def test_a_patient_token_opens_only_that_study_until_the_number_expires(api):
    valid_to = NOW + timedelta(minutes=20)
    await issue(api, "AB12CD34EF", valid_to=valid_to)
    response = await patient_login(api, "AB12CD34EF")
    assert response.status_code == 200, response.text
    body = response.json()
    claims = await api.verify(body["access_token"])
    assert claims.kind == "patient" and claims.sub == "pat_AB12CD34EF"
    assert claims.study_uid == "1.2.826.0.1.AB12CD34EF" == body["study_uid"]
    assert claims.reference_number == "AB12CD34EF" and claims.roles == ()
    assert claims.exp <= int(valid_to.timestamp()), "never beyond the number's validity"
    [ok] = await api.events("PatientLoginSucceeded")
    assert ok.aggregate_id == "pat_AB12CD34EF" and ok.payload["study_uid"] == claims.study_uid


async def test_wrong_birth_date_and_unknown_numbers_get_the_same_refusal(api):
    await issue(api, "AB12CD34EF")
    wrong = await patient_login(api, "AB12CD34EF", birth="1980-04-13")
    unknown = await patient_login(api, "ZZ99ZZ99ZZ")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["rule"] == "PatientLoginRefused"
    reasons = [
        (e.payload["reason"], e.payload["failed_attempts"])
        for e in await api.events("PatientLoginFailed")
    ]
    assert reasons == [("birth_date", 1), ("unknown", 1)]


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"complies_with_rule": False}, "ReferenceNumberBreaksComplexityRule"),
        ({"valid_to": NOW - timedelta(minutes=1)}, "ReferenceNumberOutsideValidity"),
        ({"valid_from": NOW + timedelta(days=1)}, "ReferenceNumberOutsideValidity"),
    ],
)
async def test_unusable_numbers_are_refused(api, fields, rule):
    await issue(api, "AB12CD34EF", **fields)
    response = await patient_login(api, "AB12CD34EF")
    assert response.status_code == 403 and response.json()["rule"] == rule


async def test_a_revoked_number_is_refused(api):
    await issue(api, "AB12CD34EF")
    assert (await patient_login(api, "AB12CD34EF")).status_code == 200
    await feed(
        api,
        ReferenceNumberRevoked(
            reference_number="AB12CD34EF", study_uid="1.2.826.0.1.AB12CD34EF", revoked_by="usr_rx"
        ),
        "ref_AB12CD34EF",
        2,
    )
    response = await patient_login(api, "AB12CD34EF")
    assert response.status_code == 403 and response.json()["rule"] == "ReferenceNumberWithdrawn"


async def test_payment_requires_the_pincode_and_wrong_pincodes_are_counted(api):
    dep = await department(api, payment_required=True)
    await issue(api, "PAY1234567", department_id=dep)
    pending = await patient_login(api, "PAY1234567")
    assert pending.status_code == 402 and pending.json()["rule"] == "PaymentPending"
    await feed(
        api,
        PincodeSet(
            reference_number="PAY1234567",
            study_uid="1.2.826.0.1.PAY1234567",
            pincode_hash=PasswordHasher().hash("4321"),
            set_by="usr_rx",
        ),
        "ref_PAY1234567",
        2,
    )
    missing = await patient_login(api, "PAY1234567")
    assert missing.status_code == 401 and missing.json()["rule"] == "PincodeRequired"
    wrong = await patient_login(api, "PAY1234567", pincode="0000")
    assert wrong.status_code == 401 and wrong.json()["rule"] == "PatientLoginRefused"
    [pin] = await api.events("PincodeFailed")
    assert pin.payload == {
        "reference_number": "PAY1234567",
        "study_uid": "1.2.826.0.1.PAY1234567",
        "failed_attempts": 1,
    }
    ok = await patient_login(api, "PAY1234567", pincode="4321")
    assert ok.status_code == 200


async def test_an_sms_code_is_sent_sealed_for_notify_and_then_accepted_once(api):
    dep = await department(api, patient_otp_required=True)
    await issue(api, "OTP1234567", department_id=dep)
    first = await patient_login(api, "OTP1234567")
    assert first.status_code == 401 and first.json()["rule"] == "PatientOTPRequired"
    again = await patient_login(api, "OTP1234567")
    assert again.status_code == 401 and again.json()["rule"] == "PatientOTPRequired"
    [issued] = await api.events("PatientOTPIssued")  # no second SMS within the resend gap
    assert issued.payload["mobile"] == "+32475000000"
    code = unseal(issued.payload["sealed_code"], DEV_PRIVATE_KEY)
    assert len(code) == 6 and code not in str(await api.identity.db.events.find({}).to_list(None))
    wrong = await patient_login(api, "OTP1234567", otp="000000" if code != "000000" else "111111")
    assert wrong.status_code == 401
    assert wrong.json()["rule"] == "PatientLoginRefused"
    second = await patient_login(api, "OTP1234567", otp=code)
    assert second.status_code == 200, second.text
    replay = await patient_login(api, "OTP1234567", otp=code)
    assert replay.status_code == 401, "the code is single use"
    reasons = [e.payload["reason"] for e in await api.events("PatientLoginFailed")]
    assert reasons == ["otp", "otp"]


async def test_without_a_known_mobile_the_sms_code_cannot_be_sent(api):
    dep = await department(api, patient_otp_required=True)
    await issue(api, "NOMOBILE12", department_id=dep, patient_mobile=None)
    response = await patient_login(api, "NOMOBILE12")
    assert response.status_code == 422 and response.json()["rule"] == "PatientOTPUnavailable"


async def test_failed_attempts_per_number_lock_it_with_increasing_delay(api):
    await issue(api, "LOCK123456")
    for _ in range(5):
        response = await patient_login(api, "LOCK123456", birth="2000-01-01")
        assert response.status_code == 401
    locked = await patient_login(api, "LOCK123456")
    assert locked.status_code == 429 and locked.json()["rule"] == "PatientLoginLocked"
    assert 1 <= int(locked.headers["retry-after"]) <= 30
    failures = await api.events("PatientLoginFailed")
    assert [e.payload["failed_attempts"] for e in failures] == [1, 2, 3, 4, 5], (
        "a login refused while the number is locked writes no event"
    )
    assert failures[4].payload["locked_until"] is not None
    assert len(await api.events("PatientLoginSucceeded")) == 0


async def test_twenty_pincode_guesses_at_once_are_evaluated_at_most_five_times(api):
    await issue(api, "RACE123456", pincode_required=True)
    await feed(
        api,
        PincodeSet(
            reference_number="RACE123456",
            study_uid="1.2.826.0.1.RACE123456",
            pincode_hash=PasswordHasher().hash("4321"),
            set_by="usr_rx",
        ),
        "ref_RACE123456",
        2,
    )
    answers = await asyncio.gather(
        *(patient_login(api, "RACE123456", pincode=f"{1000 + i}") for i in range(20))
    )
    rules = sorted((r.status_code, r.json()["rule"]) for r in answers)
    assert rules == [(401, "PatientLoginRefused")] * 5 + [(429, "PatientLoginLocked")] * 15
    failures = await api.events("PatientLoginFailed")
    assert sorted(e.payload["failed_attempts"] for e in failures) == [1, 2, 3, 4, 5]
    assert len(await api.events("PincodeFailed")) == 5
