"""Unit tests: every event becomes one study-logging entry (issue 7, point 1)."""

from __future__ import annotations

from studyshare.audit.domain.entries import build_entry
from studyshare.contracts.envelope import EventEnvelope

from .scenario import full_story


def entries_by_type():
    story, ids = full_story()
    bucket_studies = {ids["bucket"]: [ids["uid"]], ids["bucket2"]: [ids["uid"]]}
    out = []
    for e in story.events:
        studies = bucket_studies.get(e.aggregate_id, []) if e.aggregate_type == "Bucket" else []
        out.append(build_entry(e, studies))
    return out, ids


def test_every_event_touching_the_study_names_it_including_bucket_events_without_uid():
    entries, ids = entries_by_type()
    touching = {e["event_type"] for e in entries if ids["uid"] in e["study_uids"]}
    assert {
        "StudyShared",
        "StudyAccessed",
        "ReportUpdated",
        "StudyDownloaded",
        "StudyForwarded",
        "OTPFailed",
        "BucketLocked",
        "BucketUnlocked",
        "AccessRevoked",
        "BreakTheGlassUsed",
        "PincodeFailed",
        "PatientLoginSucceeded",
        "ReferenceNumberIssued",
        "BucketLabelChanged",
    } <= touching
    assert not any(
        ids["uid"] in e["study_uids"] for e in entries if e["event_type"] == "LoginFailed"
    )


def test_categories_name_what_happened_in_the_manuals_words():
    entries, _ = entries_by_type()
    cats = {(e["event_type"], e["category"]) for e in entries}
    assert ("OTPFailed", "otp_failure") in cats
    assert ("BucketLocked", "lock") in cats
    assert ("BreakTheGlassUsed", "break_the_glass") in cats
    assert ("StudyDownloaded", "download") in cats
    assert ("StudyForwarded", "forward") in cats
    assert ("ReportUpdated", "report_write") in cats
    assert {c for t, c in cats if t == "StudyAccessed"} == {"view", "report_read"}
    assert ("PatientLoginSucceeded", "patient_login") in cats


def test_secrets_and_patient_personal_data_never_reach_the_log():
    entries, _ = entries_by_type()
    text = repr(entries)
    assert "SEALED-PINCODE" not in text
    assert "+32471111111" not in text and "+32470000000" not in text
    assert "J.D." not in text
    assert "SEALED-SECRET-CODE" not in text


def test_a_v1_pincode_set_keeps_its_hash_out_of_the_log():
    v1 = EventEnvelope(
        event_type="PincodeSet",
        schema_version=1,
        aggregate_type="ReferenceNumber",
        aggregate_id="ref_AB12",
        aggregate_version=2,
        correlation_id="c-1",
        payload={
            "reference_number": "AB12",
            "study_uid": "1.2.3",
            "pincode_hash": "$argon2id$v1-secret",
            "set_by": "usr_1",
        },
    )
    entry = build_entry(v1)
    # v1 named the number itself: its upcast keeps it as the id (accepted, see `entries`)
    assert entry["payload"] == {"reference_id": "AB12", "study_uid": "1.2.3", "set_by": "usr_1"}


def test_unknown_event_types_are_kept_with_their_type_and_payload():
    entries, ids = entries_by_type()
    unknown = next(e for e in entries if e["event_type"] == "BucketLabelChanged")
    assert unknown["category"] == "other"
    assert unknown["payload"]["note"] == "not yet in the catalogue"
    assert unknown["study_uids"] == [ids["uid"]]


def test_actor_of_an_access_is_the_user_and_of_a_patient_login_the_reference_number():
    entries, ids = entries_by_type()
    view = next(e for e in entries if e["event_type"] == "StudyAccessed")
    assert ids["alice"] in view["actors"]
    login = next(e for e in entries if e["event_type"] == "PatientLoginSucceeded")
    assert f"ref:{ids['ref_id']}" in login["actors"]
    assert login["reference_ids"] == [ids["ref_id"]]


def test_a_patient_reference_number_is_named_by_its_id_never_in_clear():
    """The number opens the study with the date of birth: the log holds its id only, neither
    the number nor its sealed box, in the issue, the patient's logins and their accesses."""
    entries, ids = entries_by_type()
    assert ids["ref"] not in repr(entries)
    assert "sealed_number" not in repr(entries)
    issued = next(e for e in entries if e["event_type"] == "ReferenceNumberIssued")
    assert issued["payload"]["reference_id"] == ids["ref_id"]
    assert issued["reference_ids"] == [ids["ref_id"]]
    assert issued["category"] == "reference_number"
    (by_patient,) = [
        e
        for e in entries
        if e["event_type"] == "StudyAccessed" and e["payload"]["via"] == "reference_number"
    ]
    assert by_patient["payload"]["reference_id"] == ids["ref_id"]
    assert by_patient["reference_ids"] == [ids["ref_id"]]
    assert by_patient["actors"] == [f"pat_{ids['ref_id']}"]
    refs = {e["event_type"] for e in entries if e.get("reference_ids") == [ids["ref_id"]]}
    assert refs == {
        "ReferenceNumberIssued",
        "PincodeSet",
        "PincodeFailed",
        "PatientLoginSucceeded",
        "PatientLoginFailed",
        "StudyAccessed",
    }


def test_a_v1_reference_number_issued_keeps_no_sealed_nor_legacy_number():
    """A v1 issue carried the number in clear; its upcast keeps it as the reference id (the
    stream was `ref_<number>`: accepted) and as `legacy_reference_number`, which the log
    drops, as any `sealed_number` or a clear `reference_number` of an event not upcast."""
    v1 = EventEnvelope(
        event_type="ReferenceNumberIssued",
        schema_version=1,
        aggregate_type="ReferenceNumber",
        aggregate_id="ref_AB12CD34EF",
        aggregate_version=1,
        correlation_id="c-1",
        payload={"reference_number": "AB12CD34EF", "study_uid": "1.2.3", "issued_by": "usr_1"},
    )
    entry = build_entry(v1)
    assert entry["schema_version"] == 2
    assert entry["payload"] == {
        "reference_id": "AB12CD34EF",
        "number_shape": {"length": 10, "letters": True, "digits": True, "plain": True},
        "study_uid": "1.2.3",
        "issued_by": "usr_1",
    }
    unknown = EventEnvelope(
        event_type="PatientLetterPrinted",  # no class, no upcaster: kept as written, but...
        aggregate_type="ReferenceNumber",
        aggregate_id="ref_x",
        aggregate_version=1,
        correlation_id="c-2",
        payload={"reference_number": "AB12CD34EF", "sealed_number": "box", "study_uid": "1.2.3"},
    )
    assert build_entry(unknown)["payload"] == {"study_uid": "1.2.3"}


def test_a_v1_study_shared_is_upcast_before_it_is_logged():
    from studyshare.contracts.envelope import EventEnvelope

    v1 = EventEnvelope(
        event_type="StudyShared",
        schema_version=1,
        aggregate_type="Bucket",
        aggregate_id="bkt_v1",
        aggregate_version=1,
        correlation_id="c",
        payload={
            "bucket_id": "bkt_v1",
            "study_uids": ["1.2.3"],
            "recipient_ids": ["usr_old"],
            "sender_id": "usr_s",
            "access_level": "images_report_read",
            "reason": "r",
            "language": "en",
        },
    )
    entry = build_entry(v1)
    assert entry["schema_version"] == 2
    assert entry["payload"]["recipients"] == [{"recipient_id": "usr_old", "kind": "user"}]
    assert "usr_old" in entry["subjects"] and entry["study_uids"] == ["1.2.3"]
