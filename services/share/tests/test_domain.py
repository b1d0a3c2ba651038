"""Unit tests of the sharing rules, no infrastructure."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.plumbing.eventstore import envelope_for
from studyshare.share.domain import exceptions
from studyshare.share.domain.model import (
    Bucket,
    DepartmentPolicy,
    ShareRequest,
    add_calendar_months,
    check_within_held,
    decide_share,
    department_time_zone,
    end_of_day,
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
        # a tie is no majority: the first recipient's language, literally
        (["nl", "fr", "fr", "nl"], "nl"),
        (["de", "fr", "fr", "de"], "de"),
        (["nl", "fr", "fr", "de"], "nl"),
    ],
)
def test_mail_language_majority_else_first(languages, expected):
    recipients = tuple(ref(f"usr_{i}", lang) for i, lang in enumerate(languages))
    assert mail_language(recipients) == expected


def test_images_only_not_allowed_for_user():
    with pytest.raises(exceptions.ImagesOnlyNotAllowedForUser):
        decide_share(request(access_level="images"), NOW)
    ok = decide_share(request(access_level="images", recipients=(ref("grp_1", kind="group"),)), NOW)
    assert ok.access_level == "images"


def test_reason_and_consent_are_mandatory():
    with pytest.raises(exceptions.ReasonRequired):
        decide_share(request(reason=""), NOW)
    with pytest.raises(exceptions.PatientConsentRequired):
        decide_share(request(patient_agreed=False), NOW)


def test_validity_default_maximum_unlimited():
    # 1 March + one calendar month is 1 April (31 days), not 30 days
    assert decide_share(request(), NOW).valid_until == datetime(2026, 4, 1, 12, tzinfo=UTC)
    policy = DepartmentPolicy(
        default_validity_days=60, max_validity_days=14, unlimited_allowed=False
    )
    assert decide_share(request(policy=policy), NOW).valid_until == NOW + timedelta(days=14)
    with pytest.raises(exceptions.ValidityBeyondDepartmentMaximum):
        decide_share(request(policy=policy, valid_until=NOW + timedelta(days=15)), NOW)
    with pytest.raises(exceptions.UnlimitedAccessNotAllowed):
        decide_share(request(policy=policy, unlimited=True), NOW)
    with pytest.raises(exceptions.ValidityChoiceAmbiguous):
        decide_share(request(unlimited=True, valid_until=NOW + timedelta(days=1)), NOW)


@pytest.mark.parametrize(
    ("now", "months", "expected"),
    [
        # 31 January + one month: the last day of February (29 in a leap year)
        (datetime(2026, 1, 31, 9, tzinfo=UTC), 1, datetime(2026, 2, 28, 9, tzinfo=UTC)),
        (datetime(2028, 1, 31, 9, tzinfo=UTC), 1, datetime(2028, 2, 29, 9, tzinfo=UTC)),
        (datetime(2026, 12, 15, 9, tzinfo=UTC), 1, datetime(2027, 1, 15, 9, tzinfo=UTC)),
        (datetime(2026, 2, 10, 9, tzinfo=UTC), 12, datetime(2027, 2, 10, 9, tzinfo=UTC)),
    ],
)
def test_one_month_is_one_calendar_month(now, months, expected):
    assert add_calendar_months(now, months, "UTC") == expected
    policy = DepartmentPolicy(default_validity_months=months)
    assert decide_share(request(policy=policy), now).valid_until == expected


def test_a_calendar_month_keeps_the_departments_wall_clock_across_summer_time():
    # 15 March 10:00 in Brussels (CET, 09:00 UTC) + one month: 15 April 10:00 (CEST, 08:00 UTC)
    now = datetime(2026, 3, 15, 9, tzinfo=UTC)
    policy = DepartmentPolicy(time_zone="Europe/Brussels")
    assert decide_share(request(policy=policy), now).valid_until == datetime(
        2026, 4, 15, 8, tzinfo=UTC
    )


def test_a_default_in_days_stays_in_days():
    policy = DepartmentPolicy(default_validity_days=30)
    assert decide_share(request(policy=policy), NOW).valid_until == NOW + timedelta(days=30)


def test_a_date_without_a_time_ends_at_the_end_of_that_day_in_the_departments_zone():
    assert end_of_day(date(2026, 3, 20), "Europe/Brussels") == datetime(
        2026, 3, 20, 22, 59, 59, tzinfo=UTC
    )
    assert end_of_day(date(2026, 7, 20), "Europe/Brussels") == datetime(
        2026, 7, 20, 21, 59, 59, tzinfo=UTC
    )
    brussels = DepartmentPolicy(time_zone="Europe/Brussels")
    shared = decide_share(request(policy=brussels, valid_until=date(2026, 3, 20)), NOW)
    assert shared.valid_until == datetime(2026, 3, 20, 22, 59, 59, tzinfo=UTC)
    new_york = DepartmentPolicy(time_zone="America/New_York")
    shared = decide_share(request(policy=new_york, valid_until=date(2026, 3, 20)), NOW)
    assert shared.valid_until == datetime(2026, 3, 21, 3, 59, 59, tzinfo=UTC)


def test_a_date_may_be_the_last_day_the_maximum_reaches_not_the_day_after():
    policy = DepartmentPolicy(max_validity_days=14, time_zone="Europe/Brussels")
    # NOW is 1 March 13:00 in Brussels: the maximum reaches 15 March 13:00
    ok = decide_share(request(policy=policy, valid_until=date(2026, 3, 15)), NOW)
    assert ok.valid_until == datetime(2026, 3, 15, 22, 59, 59, tzinfo=UTC)
    with pytest.raises(exceptions.ValidityBeyondDepartmentMaximum):
        decide_share(request(policy=policy, valid_until=date(2026, 3, 16)), NOW)
    # today is still valid (until tonight), yesterday is in the past
    today = decide_share(request(policy=policy, valid_until=date(2026, 3, 1)), NOW)
    assert today.valid_until == datetime(2026, 3, 1, 22, 59, 59, tzinfo=UTC)
    with pytest.raises(exceptions.ValidUntilInPast):
        decide_share(request(policy=policy, valid_until=date(2026, 2, 28)), NOW)


def test_a_departments_zone_is_its_own_else_its_countrys_else_utc():
    assert department_time_zone("America/Chicago", "be") == "America/Chicago"
    assert department_time_zone(None, "be") == "Europe/Brussels"
    assert department_time_zone(None, "NL") == "Europe/Amsterdam"
    assert department_time_zone(None, "us") == "UTC"
    assert department_time_zone(None, None) == "UTC"


def test_hipaa_when_required():
    policy = DepartmentPolicy(hipaa_confirmation_required=True)
    with pytest.raises(exceptions.HipaaConfirmationRequired):
        decide_share(request(policy=policy), NOW)
    assert decide_share(request(policy=policy, hipaa_confirmed=True), NOW).hipaa_confirmed


def test_reshare_within_what_is_held():
    parent = bucket_from(decide_share(request(allow_further_sharing=True, anonymize=True), NOW))
    child = request(
        bucket_id="bkt_2", sender_id="usr_r", recipients=(ref("usr_x"),), anonymize=True
    )
    check_within_held(child, parent, {"usr_r"})
    with pytest.raises(exceptions.AnonymizationMustStay):
        check_within_held(request(bucket_id="bkt_2"), parent, {"usr_r"})
    with pytest.raises(exceptions.NotARecipientOfBucket):
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
    with pytest.raises(exceptions.PacsShareNeedsDownload):
        check_within_held(child, without, {"usr_r"})
    check_within_held(child.model_copy(update={"pacs_recipient_ids": ()}), without, {"usr_r"})
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
    with pytest.raises(exceptions.BucketIsLocked):
        bucket.verify_otp("usr_r", "usr_r", None, NOW, timedelta(hours=1))
    with pytest.raises(exceptions.NotAllowedToUnlock):
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


def test_an_invitation_is_single_use_bound_to_its_address_and_ends_with_the_share():
    invited = "email:new.colleague@example.org"
    shared = decide_share(
        request(recipients=(ref(invited, kind="email"),), access_level="images_report_read"), NOW
    )
    bucket = bucket_from(shared)
    with pytest.raises(exceptions.InvitationNotForYou):
        bucket.accept_invitation("usr_x", "someone.else@example.org", NOW, True)
    with pytest.raises(exceptions.InvitationLinkRequired):  # the address alone proves nothing
        bucket.accept_invitation("usr_x", "new.colleague@example.org", NOW, False)
    [accepted] = bucket.accept_invitation("usr_new", "New.Colleague@example.org ", NOW, True)
    bucket.apply(accepted)
    assert bucket.accept_invitation("usr_new", "new.colleague@example.org", NOW, True) == []
    with pytest.raises(exceptions.InvitationAlreadyAccepted):
        bucket.accept_invitation("usr_other", "new.colleague@example.org", NOW, True)
    later = bucket_from(shared)
    with pytest.raises(exceptions.BucketNotActive):
        later.accept_invitation(
            "usr_new", "new.colleague@example.org", NOW + timedelta(days=31), True
        )
