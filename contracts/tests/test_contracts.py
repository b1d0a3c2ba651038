from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import registry
from studyshare.contracts.events.share import StudyShared
from studyshare.contracts.events.study import (
    PincodeSet,
    ReferenceNumberIssued,
    ReferenceNumberShape,
)
from studyshare.contracts.generate import drift
from studyshare.contracts.routes import service_for_path
from studyshare.contracts.topics import TOPICS, topic_for_aggregate


def test_generated_schemas_and_asyncapi_match_the_models():
    assert drift() == [], "run `make contracts` and commit the result"


def test_the_four_named_events_are_in_the_catalogue():
    names = {c.event_type for c in registry.all()}
    assert {"StudyShared", "AccessRevoked", "OTPFailed", "BucketLocked"} <= names


def test_every_event_has_a_topic_in_the_table():
    for cls in registry.all():
        assert topic_for_aggregate(cls.aggregate_type) in {t.name for t in TOPICS}


def test_a_stored_v1_study_shared_is_upcast_to_v2_on_read():
    stored = EventEnvelope(
        event_type="StudyShared",
        schema_version=1,
        aggregate_type="Bucket",
        aggregate_id="b-1",
        aggregate_version=1,
        correlation_id="c-1",
        actor=Actor(id="u-1"),
        payload={
            "bucket_id": "b-1",
            "study_uids": ["1.2.3"],
            "recipient_ids": ["u-2", "u-3"],
            "sender_id": "u-1",
            "access_level": "images_report_read",
            "reason": "second opinion",
            "language": "nl",
            "valid_until": datetime(2027, 1, 1, tzinfo=UTC).isoformat(),
        },
    )
    upcast = registry.upcast(stored)
    assert upcast.schema_version == 2
    assert "recipient_ids" not in upcast.payload
    event = registry.payload(stored)
    assert isinstance(event, StudyShared)
    recipients = [(r.recipient_id, r.kind) for r in event.recipients]
    assert recipients == [("u-2", "user"), ("u-3", "user")]
    assert stored.payload["recipient_ids"] == ["u-2", "u-3"], "stored events are never rewritten"


def test_a_stored_v1_pincode_set_keeps_its_hash_only_under_the_legacy_name():
    stored = EventEnvelope(
        event_type="PincodeSet",
        schema_version=1,
        aggregate_type="ReferenceNumber",
        aggregate_id="ref_AB12",
        aggregate_version=2,
        correlation_id="c-1",
        payload={
            "reference_number": "AB12",
            "study_uid": "1.2.3",
            "pincode_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            "set_by": "u-1",
        },
    )
    event = registry.payload(stored)
    assert isinstance(event, PincodeSet)
    assert event.legacy_pincode_hash == stored.payload["pincode_hash"]
    assert event.sealed_pincode is None
    assert "pincode_hash" not in registry.upcast(stored).payload
    assert event.reference_id == "AB12", "v1 named the number; its stream was ref_<number>"


def test_a_stored_v1_reference_number_is_named_by_its_old_number_and_keeps_its_shape():
    """Before reference ids the number was the id (`ref_<number>`): the upcast keeps it so, with
    the shape a rule made stricter later is checked on; new events never carry the number."""
    stored = EventEnvelope(
        event_type="ReferenceNumberIssued",
        schema_version=1,
        aggregate_type="ReferenceNumber",
        aggregate_id="ref_AB12CD34",
        aggregate_version=1,
        correlation_id="c-1",
        payload={"reference_number": "AB12CD34", "study_uid": "1.2.3"},
    )
    event = registry.payload(stored)
    assert isinstance(event, ReferenceNumberIssued)
    assert (event.reference_id, event.legacy_reference_number) == ("AB12CD34", "AB12CD34")
    assert event.number_shape == ReferenceNumberShape(
        length=8, letters=True, digits=True, plain=True
    )
    assert "legacy_reference_number" not in event.model_dump()
    for name in ("StudyAccessed", "PatientLoginFailed"):
        old = stored.model_copy(
            update={"event_type": name, "payload": {"reference_number": "AB12CD34"}}
        )
        assert registry.upcast(old).payload == {"reference_id": "AB12CD34"}


def test_payloads_ignore_unknown_fields_and_are_frozen():
    event = StudyShared.model_validate(
        {
            "bucket_id": "b",
            "study_uids": ["1"],
            "sender_id": "s",
            "access_level": "images",
            "reason": "r",
            "language": "en",
            "recipients": [],
            "field_from_the_future": 1,
        }
    )
    with pytest.raises(ValidationError):
        event.bucket_id = "other"  # type: ignore[misc]


def test_routes_pick_the_longest_prefix():
    assert service_for_path("/api/shares/abc/otp").name == "share"
    assert service_for_path("/dicomweb/studies").name == "study-store"
    assert service_for_path("/api/auth/login").name == "identity"
    assert service_for_path("/api/sharesX") is None
