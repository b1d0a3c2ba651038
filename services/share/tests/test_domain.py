"""Unit tests of the sharing rules, no infrastructure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.plumbing.eventstore import envelope_for
from studyshare.share.domain import rules
from studyshare.share.domain.model import (
    Bucket,
    DepartmentPolicy,
    ShareRequest,
    check_within_held,
    decide_share,
    mail_language,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ref(rid: str, language: str | None = None, kind: str = "user") -> RecipientRef:
    return RecipientRef(recipient_id=rid, kind=kind, language=language)  # type: ignore[arg-type]


def request(**kw) -> ShareRequest:
    values = dict(
        bucket_id="bkt_1",
        sender_id="usr_s",
        study_uids=("1.2",),
        recipients=(ref("usr_r", "nl"),),
        access_level="images_report_read",
        reason="second opinion",
        patient_agreed=True,
    )
    values.update(kw)
    return ShareRequest(**values)  # type: ignore[arg-type]


def bucket_from(shared: StudyShared, *more) -> Bucket:
    envelopes = [
        envelope_for(e, aggregate_id=shared.bucket_id, aggregate_version=i + 1, actor=Actor(id="t"))
        for i, e in enumerate([shared, *more])
    ]
    return Bucket.rehydrate(shared.bucket_id, envelopes)


@pytest.mark.parametrize(
    ("languages", "expected"),
    [
        (["nl"], "nl"),
        (["nl", "fr", "fr"], "fr"),
        (["nl", "fr"], "nl"),
        (["nl", "fr", "de"], "nl"),
        ([None, "fr", "fr"], "fr"),
    ],
)
def test_mail_language_majority_else_first(languages, expected):
    recipients = tuple(ref(f"usr_{i}", lang) for i, lang in enumerate(languages))
    assert mail_language(recipients) == expected


def test_images_only_not_allowed_for_user():
    with pytest.raises(rules.ImagesOnlyNotAllowedForUser):
        decide_share(request(access_level="images"), NOW)
    ok = decide_share(request(access_level="images", recipients=(ref("grp_1", kind="group"),)), NOW)
    assert ok.access_level == "images"


def test_reason_and_consent_are_mandatory():
    with pytest.raises(rules.ReasonRequired):
        decide_share(request(reason=""), NOW)
    with pytest.raises(rules.PatientConsentRequired):
        decide_share(request(patient_agreed=False), NOW)


def test_validity_default_maximum_unlimited():
    assert decide_share(request(), NOW).valid_until == NOW + timedelta(days=30)
    policy = DepartmentPolicy(
        default_validity_days=60, max_validity_days=14, unlimited_allowed=False
    )
    assert decide_share(request(policy=policy), NOW).valid_until == NOW + timedelta(days=14)
    with pytest.raises(rules.ValidityBeyondDepartmentMaximum):
        decide_share(request(policy=policy, valid_until=NOW + timedelta(days=15)), NOW)
    with pytest.raises(rules.UnlimitedAccessNotAllowed):
        decide_share(request(policy=policy, unlimited=True), NOW)
    with pytest.raises(rules.ValidityChoiceAmbiguous):
        decide_share(request(unlimited=True, valid_until=NOW + timedelta(days=1)), NOW)


def test_hipaa_when_required():
    policy = DepartmentPolicy(hipaa_confirmation_required=True)
    with pytest.raises(rules.HipaaConfirmationRequired):
        decide_share(request(policy=policy), NOW)
    assert decide_share(request(policy=policy, hipaa_confirmed=True), NOW).hipaa_confirmed


def test_reshare_within_what_is_held():
    parent = bucket_from(decide_share(request(allow_further_sharing=True, anonymize=True), NOW))
    child = request(
        bucket_id="bkt_2", sender_id="usr_r", recipients=(ref("usr_x"),), anonymize=True
    )
    check_within_held(child, parent, {"usr_r"})
    with pytest.raises(rules.AnonymizationMustStay):
        check_within_held(request(bucket_id="bkt_2"), parent, {"usr_r"})
    with pytest.raises(rules.NotARecipientOfBucket):
        check_within_held(child, parent, {"usr_other"})
    shared = decide_share(child, NOW, parent)
    assert shared.parent_bucket_id == "bkt_1"
    assert shared.valid_until <= parent.valid_until


def test_a_share_to_a_pacs_needs_the_sharers_download_permission():
    pacs = ref("dep_pacs", kind="department")
    child = request(
        bucket_id="bkt_2",
        sender_id="usr_r",
        recipients=(pacs,),
        access_level="images",
        pacs_recipient_ids=("dep_pacs",),
    )
    without = bucket_from(decide_share(request(allow_further_sharing=True), NOW))
    with pytest.raises(rules.PacsShareNeedsDownload):
        check_within_held(child, without, {"usr_r"})
    check_within_held(replace(child, pacs_recipient_ids=()), without, {"usr_r"})
    held = request(allow_further_sharing=True, allow_download=True)
    check_within_held(child, bucket_from(decide_share(held, NOW)), {"usr_r"})


def test_five_wrong_codes_lock_the_bucket_and_unlock_rules():
    bucket = bucket_from(decide_share(request(two_factor=True, sending_department_id="dep_1"), NOW))
    for attempt in range(1, 5):
        events = bucket.verify_otp("usr_r", "usr_r", None, NOW, timedelta(hours=1))
        assert [e.event_type for e in events] == ["OTPFailed"]
        bucket.apply(events[0])
        assert bucket.consecutive_failures == attempt
    events = bucket.verify_otp("usr_r", "usr_r", None, NOW, timedelta(hours=1))
    assert [e.event_type for e in events] == ["OTPFailed", "BucketLocked"]
    for e in events:
        bucket.apply(e)
    with pytest.raises(rules.BucketIsLocked):
        bucket.verify_otp("usr_r", "usr_r", None, NOW, timedelta(hours=1))
    with pytest.raises(rules.NotAllowedToUnlock):
        bucket.unlock("usr_x", ("department_admin",), ("dep_2",))
    [unlocked] = bucket.unlock("usr_a", ("department_admin",), ("dep_1",))
    bucket.apply(unlocked)
    assert not bucket.locked and bucket.consecutive_failures == 0


def test_codes_are_single_use_and_expire():
    bucket = bucket_from(decide_share(request(two_factor=True), NOW))
    [requested] = bucket.request_otp(
        "usr_r", "usr_r", "otp_1", "sealed", NOW + timedelta(minutes=5), "nl", NOW
    )
    bucket.apply(requested)
    late = bucket.verify_otp(
        "usr_r", "usr_r", "otp_1", NOW + timedelta(minutes=6), timedelta(hours=1)
    )
    assert late[0].event_type == "OTPFailed"
    [ok] = bucket.verify_otp("usr_r", "usr_r", "otp_1", NOW, timedelta(hours=1))
    assert ok.event_type == "OTPVerified"
    bucket.apply(ok)
    again = bucket.verify_otp("usr_r", "usr_r", "otp_1", NOW, timedelta(hours=1))
    assert again[0].event_type == "OTPFailed"


def test_expiry_once_and_not_before_time():
    bucket = bucket_from(decide_share(request(), NOW))
    assert bucket.expire(NOW) == []
    [expired] = bucket.expire(NOW + timedelta(days=31))
    bucket.apply(expired)
    assert bucket.expire(NOW + timedelta(days=32)) == []
    assert bucket.status == "expired"


def test_v1_study_shared_is_upcast_to_typed_recipients():
    from studyshare.contracts.envelope import EventEnvelope
    from studyshare.contracts.events import registry

    v1 = EventEnvelope(
        event_type="StudyShared",
        schema_version=1,
        aggregate_type="Bucket",
        aggregate_id="bkt_old",
        aggregate_version=1,
        occurred_at=NOW,
        actor=Actor(id="usr_s"),
        correlation_id="c",
        payload={
            "bucket_id": "bkt_old",
            "study_uids": ["1.2"],
            "recipient_ids": ["usr_a"],
            "sender_id": "usr_s",
            "access_level": "images_report_read",
            "reason": "r",
            "language": "en",
        },
    )
    bucket = Bucket.rehydrate("bkt_old", [registry.upcast(v1)])
    assert bucket.active_recipient_ids == {"usr_a"}
