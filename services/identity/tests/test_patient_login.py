"""Issue point 7: patient login with reference number + date of birth (+ pincode after
payment, + SMS code); the token opens one study within the validity window; failures are
counted and limited. The number is a credential: identity names it by its reference id
(`studyshare.plumbing.reference_ids`) only, and finds numbers issued before ids (v1)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from bson import json_util

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events.study import (
    PincodeSet,
    ReferenceNumberIssued,
    ReferenceNumberRevoked,
    ReferenceNumberShape,
)
from studyshare.identity.__main__ import projections
from studyshare.identity.adapters.projections import COLLECTION, NAME
from studyshare.identity.settings import IdentitySettings
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import GenerationPointer, ProjectionRunner
from studyshare.plumbing.reference_ids import reference_id, seal_number
from studyshare.plumbing.revocations import Ending, SessionRevocations
from studyshare.plumbing.sealing import (
    DEV_PINCODE_PRIVATE_KEY,
    DEV_PINCODE_PUBLIC_KEY,
    DEV_PRIVATE_KEY,
    DEV_PUBLIC_KEY,
    generate_keypair,
    seal_pincode,
    unseal,
)
from studyshare.plumbing.snapshot import differences, generation_state
from studyshare.plumbing.testing import production_settings

BIRTH = "1980-04-12"
NOW = datetime.now(UTC)


def rid(api, number: str) -> str:
    """The reference id of `number`, under the secret identity and the study store share."""
    return reference_id(number, api.identity.settings.reference_number_secret)


def stream(api, number: str) -> str:
    """The study store's ReferenceNumber stream of a number issued with reference ids."""
    return f"ref_{rid(api, number)}"


def issued_values(number: str, **fields) -> dict:
    values = {
        "study_uid": f"1.2.826.0.1.{number}",
        "number_shape": ReferenceNumberShape.of(number),
        "department_id": "dep_rx",
        "valid_from": NOW - timedelta(days=1),
        "valid_to": NOW + timedelta(days=10),
        "patient_birth_date": date.fromisoformat(BIRTH),
        "patient_mobile": "+32475000000",
    }
    values.update(fields)
    return values


async def issue(api, number: str, version: int = 1, **fields):
    """The `ReferenceNumberIssued` the study store writes: the number by its id, and sealed."""
    ref_id = rid(api, number)
    secret = api.identity.settings.reference_number_secret
    values = {
        "reference_id": ref_id,
        "sealed_number": seal_number(number, ref_id, secret),
        **issued_values(number, **fields),
    }
    await feed(api, ReferenceNumberIssued(**values), f"ref_{ref_id}", version)


async def issue_v1(api, number: str, **fields):
    """A `ReferenceNumberIssued` stored before reference ids: the number in clear, its stream
    `ref_<number>`."""
    payload = ReferenceNumberIssued(reference_id="-", **issued_values(number, **fields))
    payload = payload.model_dump(
        mode="json", exclude={"reference_id", "sealed_number", "number_shape"}
    )
    envelope = EventEnvelope(
        event_type="ReferenceNumberIssued",
        schema_version=1,
        aggregate_type="ReferenceNumber",
        aggregate_id=f"ref_{number}",
        aggregate_version=1,
        correlation_id="c-v1",
        payload={"reference_number": number, **payload},
    )
    await feed_envelope(api, envelope)


async def feed(api, event, aggregate_id: str, version: int):
    envelope = envelope_for(
        event, aggregate_id=aggregate_id, aggregate_version=version, actor=Actor(id="usr_rx")
    )
    await feed_envelope(api, envelope)


async def feed_envelope(api, envelope: EventEnvelope):
    """Apply one envelope with the worker's own projection (as its settings build it)."""
    [reference_numbers] = projections(api.identity.settings)
    runner = ProjectionRunner(reference_numbers, api.identity.db)
    assert await runner.apply_batch([envelope]) == 1


def pincode_set(api, number: str, pincode: str, public_key: str = DEV_PINCODE_PUBLIC_KEY, **fields):
    """The `PincodeSet` the study store writes: the pincode sealed to identity's key, bound to
    the reference id."""
    values = {
        "reference_id": rid(api, number),
        "study_uid": f"1.2.826.0.1.{number}",
        "sealed_pincode": seal_pincode(rid(api, number), pincode, public_key),
        "set_by": "usr_rx",
    }
    values.update(fields)
    return PincodeSet(**values)


async def kept_hash(api, number: str) -> str | None:
    numbers = await GenerationPointer(api.identity.db, NAME, cache_s=0).collection(COLLECTION)
    doc = await numbers.find_one({"_id": rid(api, number)})
    return doc["pincode_hash"]


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
    ref_id = rid(api, "AB12CD34EF")
    assert claims.kind == "patient" and claims.sub == f"pat_{ref_id}"
    assert claims.study_uid == "1.2.826.0.1.AB12CD34EF" == body["study_uid"]
    assert claims.reference_id == ref_id and claims.roles == ()
    assert claims.exp <= int(valid_to.timestamp()), "never beyond the number's validity"
    [ok] = await api.events("PatientLoginSucceeded")
    assert ok.aggregate_id == f"pat_{ref_id}" and ok.payload["study_uid"] == claims.study_uid
    assert ok.payload["reference_id"] == ref_id


async def test_a_patient_logout_ends_the_session_for_every_service(api):
    await issue(api, "AB12CD34EF")
    token = (await patient_login(api, "AB12CD34EF")).json()["access_token"]
    claims = await api.verify(token)
    bearer = {"Authorization": f"Bearer {token}"}
    me = await api.client.get("/api/users/me", headers=bearer)
    assert me.status_code == 401 and me.json()["rule"] == "Unauthorized", "no user, yet live"
    out = await api.client.post("/api/auth/logout", headers=bearer)
    assert out.status_code == 204, out.text
    [ended] = await api.events("LoggedOut")
    assert ended.payload == {"user_id": f"pat_{rid(api, 'AB12CD34EF')}", "session_id": claims.sid}
    assert ended.actor.kind == "patient"
    revocations = SessionRevocations()  # as every other service follows identity's ends
    for end in await api.identity.session_ends.after(None):
        revocations.fold(Ending.from_record(end))
    assert revocations.refusal(claims) == "the session was logged out", "every service refuses"
    me = await api.client.get("/api/users/me", headers=bearer)
    assert me.status_code == 401 and me.json()["rule"] == "SessionEnded", "identity refuses"
    again = await api.client.post("/api/auth/logout", headers=bearer)
    assert again.status_code == 204 and len(await api.events("LoggedOut")) == 1


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


async def test_identity_keeps_and_writes_only_ids_never_the_number_nor_what_was_typed(api):
    await issue(api, "AB12CD34EF", study_uid="1.2.826.0.1.42")
    token = (await patient_login(api, "AB12CD34EF")).json()["access_token"]
    assert (await patient_login(api, "AB12CD34EF", birth="1980-04-13")).status_code == 401
    assert (await patient_login(api, "ZZ99ZZ99ZZ")).status_code == 401
    known, typed = rid(api, "AB12CD34EF"), rid(api, "ZZ99ZZ99ZZ")
    patients = [e for e in await api.events() if e.aggregate_type == "Patient"]
    assert {e.aggregate_id for e in patients} == {f"pat_{known}", f"pat_{typed}"}
    assert [(e.payload["reason"], e.payload["reference_id"]) for e in patients[1:]] == [
        ("birth_date", known),
        ("unknown", typed),  # only the id of what was typed
    ]
    claims = (await api.verify(token)).model_dump_json()
    stored = {
        name: json_util.dumps(await api.identity.db[name].find().to_list(None))
        for name in await api.identity.db.list_collection_names()
    }
    for clear in ("AB12CD34EF", "ZZ99ZZ99ZZ"):
        assert clear.lower() not in claims.lower(), "the token names the id"
        assert [n for n, docs in stored.items() if clear.lower() in docs.lower()] == [], (
            "no event, aggregate id, read model, counter or session holds the number"
        )


async def test_a_number_typed_in_lower_case_or_with_spaces_logs_in(api):
    await issue(api, "AB12CD34EF")
    response = await patient_login(api, "  ab12cd34ef ")
    assert response.status_code == 200, response.text
    claims = await api.verify(response.json()["access_token"])
    assert claims.reference_id == rid(api, "AB12CD34EF")
    assert claims.sub == f"pat_{rid(api, 'AB12CD34EF')}", "one counter whatever the case"


async def test_a_reference_id_typed_as_a_number_does_not_log_in(api):
    """An auditor sees reference ids: one is no credential, whatever its spelling."""
    await issue(api, "AB12CD34EF")
    ref_id = rid(api, "AB12CD34EF")
    # an id spelled like a number (the guard, not the spelling, keeps it out)
    await feed(
        api,
        ReferenceNumberIssued(reference_id="ID23456789", **issued_values("ID23456789")),
        "ref_ID23456789",
        1,
    )
    for typed in (ref_id, ref_id.upper(), f"ref_{ref_id}", "ID23456789"):
        response = await patient_login(api, typed)
        assert response.status_code == 401, typed
        assert response.json()["rule"] == "PatientLoginRefused"
    failures = await api.events("PatientLoginFailed")
    assert [e.payload["reason"] for e in failures] == ["unknown"] * 4
    assert ref_id not in {e.payload["reference_id"] for e in failures}
    assert (await patient_login(api, "AB12CD34EF")).status_code == 200, "the number does"


async def test_a_number_issued_before_reference_ids_still_logs_the_patient_in(api):
    await issue_v1(api, "OLD7654321")
    response = await patient_login(api, "old7654321 ")
    assert response.status_code == 200, response.text
    claims = await api.verify(response.json()["access_token"])
    assert claims.study_uid == "1.2.826.0.1.OLD7654321"
    # the reference keeps the id its stream (`ref_<number>`) gave it, as the study store names
    # it; the patient's own stream and counter take the id of what was typed
    assert claims.reference_id == "OLD7654321"
    assert claims.sub == f"pat_{rid(api, 'OLD7654321')}"
    [ok] = await api.events("PatientLoginSucceeded")
    assert ok.aggregate_id == claims.sub and ok.payload["reference_id"] == "OLD7654321"
    wrong = await patient_login(api, "OLD7654321", birth="1980-04-13")
    assert wrong.status_code == 401 and wrong.json()["rule"] == "PatientLoginRefused"
    revoked = ReferenceNumberRevoked(
        reference_id="OLD7654321", study_uid=claims.study_uid, revoked_by="usr_rx"
    )
    await feed(api, revoked, "ref_OLD7654321", 2)  # the study store's v2 event on that stream
    response = await patient_login(api, "OLD7654321")
    assert response.status_code == 403 and response.json()["rule"] == "ReferenceNumberWithdrawn"


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
            reference_id=rid(api, "AB12CD34EF"),
            study_uid="1.2.826.0.1.AB12CD34EF",
            revoked_by="usr_rx",
        ),
        stream(api, "AB12CD34EF"),
        2,
    )
    response = await patient_login(api, "AB12CD34EF")
    assert response.status_code == 403 and response.json()["rule"] == "ReferenceNumberWithdrawn"


async def test_payment_requires_the_pincode_and_wrong_pincodes_are_counted(api):
    dep = await department(api, payment_required=True)
    await issue(api, "PAY1234567", department_id=dep)
    pending = await patient_login(api, "PAY1234567")
    assert pending.status_code == 402 and pending.json()["rule"] == "PaymentPending"
    await feed(api, pincode_set(api, "PAY1234567", "4321"), stream(api, "PAY1234567"), 2)
    missing = await patient_login(api, "PAY1234567")
    assert missing.status_code == 401 and missing.json()["rule"] == "PincodeRequired"
    wrong = await patient_login(api, "PAY1234567", pincode="0000")
    assert wrong.status_code == 401 and wrong.json()["rule"] == "PatientLoginRefused"
    [pin] = await api.events("PincodeFailed")
    assert pin.payload == {
        "reference_id": rid(api, "PAY1234567"),
        "study_uid": "1.2.826.0.1.PAY1234567",
        "failed_attempts": 1,
    }
    ok = await patient_login(api, "PAY1234567", pincode="4321")
    assert ok.status_code == 200


async def test_identity_keeps_only_its_own_argon2_hash_of_the_sealed_pincode(api):
    await issue(api, "SEAL123456", pincode_required=True)
    await feed(api, pincode_set(api, "SEAL123456", "8642"), stream(api, "SEAL123456"), 2)
    kept = await kept_hash(api, "SEAL123456")
    assert kept is not None and kept.startswith("$argon2id$")
    assert PasswordHasher().verify(kept, "8642")
    assert (await patient_login(api, "SEAL123456", pincode="8642")).status_code == 200


async def test_a_rebuild_keeps_the_same_pincodes_though_each_hash_is_salted_anew(api):
    [reference_numbers] = projections(api.identity.settings)
    runner = ProjectionRunner(reference_numbers, api.identity.db)
    events = [
        envelope_for(
            event, aggregate_id=stream(api, "SALT123456"), aggregate_version=n, actor=Actor()
        )
        for n, event in enumerate(
            [
                ReferenceNumberIssued(
                    reference_id=rid(api, "SALT123456"),
                    number_shape=ReferenceNumberShape.of("SALT123456"),
                    study_uid="1.2.3",
                    valid_to=NOW,
                ),
                pincode_set(api, "SALT123456", "1122"),
            ],
            start=1,
        )
    ]
    for generation in (1, 2):
        assert await runner.apply_batch(events, generation=generation) == 2
    one = await generation_state(api.identity.db, reference_numbers, 1)
    two = await generation_state(api.identity.db, reference_numbers, 2)
    assert differences(one, two) == []
    assert one["numbers"][rid(api, "SALT123456")]["pincode_kept"] is True


@pytest.mark.parametrize(
    ("sealed_for", "public_key"),
    [
        ("OTHER12345", DEV_PINCODE_PUBLIC_KEY),  # a box copied from another reference number
        ("COPY123456", DEV_PUBLIC_KEY),  # sealed to notify's key, not identity's
        ("COPY123456", generate_keypair()[1]),  # sealed to a key identity never held
        (None, DEV_PINCODE_PUBLIC_KEY),  # bound to the number itself, not to its id
    ],
    ids=["another-number", "notify-key", "unknown-key", "the-number-not-its-id"],
)
async def test_a_pincode_identity_cannot_open_for_this_number_opens_nothing(
    api, sealed_for, public_key
):
    await issue(api, "COPY123456", pincode_required=True)
    bound_to = rid(api, sealed_for) if sealed_for else "COPY123456"
    event = pincode_set(
        api,
        "COPY123456",
        "1357",
        sealed_pincode=seal_pincode(bound_to, "1357", public_key),
    )
    await feed(api, event, stream(api, "COPY123456"), 2)
    assert await kept_hash(api, "COPY123456") is None
    response = await patient_login(api, "COPY123456", pincode="1357")
    assert response.status_code == 402 and response.json()["rule"] == "PaymentPending"


async def test_a_pincode_sealed_before_a_key_rotation_opens_with_the_retired_key(make_api):
    retired_private, retired_public = generate_keypair()
    current_private, _ = generate_keypair()
    api = await make_api(
        pincode_seal_private_key=current_private,
        pincode_seal_previous_private_keys=[retired_private],
    )
    await issue(api, "ROTA123456", pincode_required=True)
    await feed(
        api, pincode_set(api, "ROTA123456", "2468", retired_public), stream(api, "ROTA123456"), 2
    )
    assert (await patient_login(api, "ROTA123456", pincode="2468")).status_code == 200


def test_only_the_worker_holds_the_pincode_key_and_never_the_development_one_in_production():
    production = {
        **production_settings("identity"),
        "otp_seal_public_key": generate_keypair()[1],
        "reference_number_secret": "r" * 32,
        "argon2_memory_kib": 64,
    }
    api_or_relay = IdentitySettings(**production)  # they start without the pincode key
    with pytest.raises(ValueError, match="pincode sealing key"):
        projections(api_or_relay)
    private, _ = generate_keypair()
    with pytest.raises(ValueError, match="pincode sealing key"):
        projections(
            IdentitySettings(
                **production,
                pincode_seal_private_key=private,
                pincode_seal_previous_private_keys=[DEV_PINCODE_PRIVATE_KEY],
            )
        )
    [worker] = projections(IdentitySettings(**production, pincode_seal_private_key=private))
    assert worker.pincodes.private_keys == (private,)


async def test_a_stored_v1_pincode_set_still_lets_the_patient_in_on_replay(api):
    await issue_v1(api, "OLD1234567", pincode_required=True)  # v1 pincodes: v1 numbers only
    v1 = EventEnvelope(
        event_type="PincodeSet",
        schema_version=1,
        aggregate_type="ReferenceNumber",
        aggregate_id="ref_OLD1234567",
        aggregate_version=2,
        correlation_id="c-v1",
        payload={
            "reference_number": "OLD1234567",
            "study_uid": "1.2.826.0.1.OLD1234567",
            "pincode_hash": PasswordHasher().hash("9753"),
            "set_by": "usr_rx",
        },
    )
    await feed_envelope(api, v1)
    wrong = await patient_login(api, "OLD1234567", pincode="9754")
    assert wrong.status_code == 401 and wrong.json()["rule"] == "PatientLoginRefused"
    assert (await patient_login(api, "OLD1234567", pincode="9753")).status_code == 200


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
    await feed(api, pincode_set(api, "RACE123456", "4321"), stream(api, "RACE123456"), 2)
    answers = await asyncio.gather(
        *(patient_login(api, "RACE123456", pincode=f"{1000 + i}") for i in range(20))
    )
    rules = sorted((r.status_code, r.json()["rule"]) for r in answers)
    assert rules == [(401, "PatientLoginRefused")] * 5 + [(429, "PatientLoginLocked")] * 15
    failures = await api.events("PatientLoginFailed")
    assert sorted(e.payload["failed_attempts"] for e in failures) == [1, 2, 3, 4, 5]
    assert len(await api.events("PincodeFailed")) == 5
