"""The access rules as pure functions: every path, every way a grant stops counting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from studyshare.access_policy.rules import (
    AccessFacts,
    Bucket,
    Recipient,
    ReferenceFacts,
    StudyFacts,
    Subject,
    anonymous_number,
    decide,
)
from studyshare.study_store.domain.access_rules import (
    BucketIsLocked,
    GrantExpired,
    GrantRevoked,
    NoAccessToStudy,
    StudyNotFound,
    TwoFactorVerificationRequired,
    refuse,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
UID = "1.2.3.4"
STUDY = StudyFacts(UID, department_id="dep_rad", owner_id="usr_owner")
DOCTOR = Subject(id="usr_doc", roles=frozenset({"physician"}))


def bucket(**kw) -> Bucket:
    values = dict(
        bucket_id="bkt_1",
        study_uids=frozenset({UID}),
        recipients=(Recipient("usr_doc", "user"),),
        access_level="images_report_read",
        sender_id="usr_sender",
        valid_until=NOW + timedelta(days=30),
    )
    values.update(kw)
    return Bucket(**values)


def facts(*buckets: Bucket, **kw) -> AccessFacts:
    return AccessFacts(now=kw.pop("now", NOW), study=kw.pop("study", STUDY), buckets=buckets, **kw)


def test_grant_gives_images_and_report_per_access_level():
    for level, report in [
        ("images", "none"),
        ("images_report_read", "read"),
        ("images_report_write", "write"),
    ]:
        d = decide(DOCTOR, UID, facts(bucket(access_level=level)))
        assert d.images and d.report == report and d.via == "grant" and d.bucket_id == "bkt_1"
        assert d.valid_until == NOW + timedelta(days=30)


def test_no_path_means_no_access_and_unknown_study_is_not_found():
    assert decide(DOCTOR, UID, facts()).refusal == "no_grant"
    with pytest.raises(NoAccessToStudy):
        refuse(decide(DOCTOR, UID, facts()))
    unknown = decide(DOCTOR, UID, facts(study=None))
    assert unknown.refusal == "unknown_study"
    with pytest.raises(StudyNotFound):
        refuse(unknown)


def test_grant_honours_validity_valid_until_vs_now():
    b = bucket(valid_until=NOW + timedelta(seconds=1))
    assert decide(DOCTOR, UID, facts(b)).images
    late = decide(DOCTOR, UID, facts(b, now=NOW + timedelta(seconds=1)))
    assert not late.images and late.refusal == "expired"
    with pytest.raises(GrantExpired):
        refuse(late)


def test_unlimited_grant_never_expires_and_bucket_expired_event_ends_it():
    b = bucket(valid_until=None, unlimited=True)
    d = decide(DOCTOR, UID, facts(b, now=NOW + timedelta(days=3650)))
    assert d.images and d.valid_until is None
    assert decide(DOCTOR, UID, facts(replace(b, expired=True))).refusal == "expired"


def test_revocation_of_bucket_study_or_recipient_ends_access():
    for revoked in (
        bucket(revoked=True),
        bucket(removed_study_uids=frozenset({UID})),
        bucket(revoked_recipient_ids=frozenset({"usr_doc"})),
    ):
        d = decide(DOCTOR, UID, facts(revoked))
        assert not d.images and d.refusal == "revoked"
        with pytest.raises(GrantRevoked):
            refuse(d)


def test_revoking_another_study_of_the_bucket_keeps_this_one():
    b = bucket(study_uids=frozenset({UID, "9.9"}), removed_study_uids=frozenset({"9.9"}))
    assert decide(DOCTOR, UID, facts(b)).images


def test_locked_bucket_gives_no_access_to_anyone_until_unlocked():
    locked = bucket(
        locked=True, recipients=(Recipient("usr_doc", "user"), Recipient("grp_1", "group"))
    )
    member = Subject(id="usr_m", group_ids=frozenset({"grp_1"}))
    for subject in (DOCTOR, member):
        d = decide(subject, UID, facts(locked))
        assert d.refusal == "locked"
        with pytest.raises(BucketIsLocked):
            refuse(d)
    assert decide(DOCTOR, UID, facts(replace(locked, locked=False))).images


def test_two_factor_bucket_opens_only_after_otp_verified_until_verified_until():
    b = bucket(two_factor=True)
    pending = decide(DOCTOR, UID, facts(b))
    assert pending.refusal == "two_factor_required" and pending.two_factor_bucket_id == "bkt_1"
    with pytest.raises(TwoFactorVerificationRequired):
        refuse(pending)
    verified = {("bkt_1", "usr_doc", None): NOW + timedelta(hours=1)}
    assert decide(DOCTOR, UID, facts(b, otp_verified_until=verified)).images
    later = NOW + timedelta(hours=1)
    again = decide(DOCTOR, UID, facts(b, otp_verified_until=verified, now=later))
    assert again.refusal == "two_factor_required"


def test_otp_verified_by_another_recipient_does_not_open_it_for_me():
    b = bucket(
        two_factor=True, recipients=(Recipient("usr_doc", "user"), Recipient("usr_x", "user"))
    )
    verified = {("bkt_1", "usr_x", None): NOW + timedelta(hours=1)}
    assert not decide(DOCTOR, UID, facts(b, otp_verified_until=verified)).images


def test_otp_verified_opens_the_bucket_in_the_session_that_entered_it_only():
    """Issue 15, point 2: not for 12 hours of any session of the recipient."""
    b = bucket(two_factor=True)
    verified = {("bkt_1", "usr_doc", "ses_a"): NOW + timedelta(hours=1)}
    in_a = replace(DOCTOR, session_id="ses_a")
    assert decide(in_a, UID, facts(b, otp_verified_until=verified)).images
    for other in (replace(DOCTOR, session_id="ses_b"), DOCTOR):
        refused = decide(other, UID, facts(b, otp_verified_until=verified))
        assert refused.refusal == "two_factor_required"


def test_anonymized_share_never_gives_the_report_and_numbers_are_stable():
    b = bucket(anonymize=True, access_level="images_report_write")
    d = decide(DOCTOR, UID, facts(b))
    assert d.images and d.anonymized and d.report == "none"
    assert d.anonymous_number == anonymous_number("bkt_1", UID)
    assert d.anonymous_number == decide(DOCTOR, UID, facts(b)).anonymous_number
    assert anonymous_number("bkt_2", UID) != d.anonymous_number
    assert len(d.anonymous_number) == 6 and d.anonymous_number.isdigit()


def test_grants_combine_to_the_most_permissive_non_anonymized_one():
    anon_write = bucket(
        bucket_id="bkt_a", anonymize=True, access_level="images_report_write", allow_download=True
    )
    clear_images = bucket(bucket_id="bkt_c", access_level="images")
    d = decide(DOCTOR, UID, facts(anon_write, clear_images))
    assert not d.anonymized and d.bucket_id == "bkt_c" and d.report == "none"
    assert d.download is False, "download of the anonymized grant does not leak into the clear"
    read = bucket(bucket_id="bkt_r", access_level="images_report_read")
    dl = bucket(
        bucket_id="bkt_d",
        access_level="images",
        allow_download=True,
        valid_until=None,
        unlimited=True,
    )
    merged = decide(DOCTOR, UID, facts(read, dl))
    assert merged.report == "read" and merged.download and merged.bucket_id == "bkt_r"
    assert merged.valid_until is None


def test_only_anonymized_grants_give_an_anonymized_decision():
    a = bucket(bucket_id="bkt_a", anonymize=True)
    b = bucket(bucket_id="bkt_b", anonymize=True, allow_download=True)
    d = decide(DOCTOR, UID, facts(a, b))
    assert d.anonymized and d.report == "none" and d.download


def test_department_member_sees_department_studies_owner_sees_own():
    staff = Subject(
        id="usr_s", roles=frozenset({"department_staff"}), department_ids=frozenset({"dep_rad"})
    )
    d = decide(staff, UID, facts())
    assert d.images and d.via == "department" and d.report == "write" and d.download
    owner = Subject(id="usr_owner", roles=frozenset({"physician"}))
    o = decide(owner, UID, facts())
    assert o.via == "owner" and o.report == "write"
    other_dep = replace(staff, department_ids=frozenset({"dep_other"}))
    assert not decide(other_dep, UID, facts()).images


def test_department_beats_an_anonymized_grant():
    staff = Subject(
        id="usr_doc", roles=frozenset({"physician"}), department_ids=frozenset({"dep_rad"})
    )
    d = decide(staff, UID, facts(bucket(anonymize=True)))
    assert d.via == "department" and not d.anonymized


def test_group_members_see_studies_shared_with_the_group():
    b = bucket(recipients=(Recipient("grp_1", "group"),), access_level="images_report_write")
    member = Subject(id="usr_m", group_ids=frozenset({"grp_1"}))
    d = decide(member, UID, facts(b))
    assert d.images and d.via == "group" and d.group_id == "grp_1" and d.report == "write"
    assert not decide(Subject(id="usr_n"), UID, facts(b)).images


def test_group_practice_colleagues_see_each_others_studies():
    colleague = Subject(id="usr_c", colleagues={"usr_doc": "grp_p", "usr_owner": "grp_p"})
    shared = decide(colleague, UID, facts(bucket()))
    assert shared.images and shared.via == "group" and shared.group_id == "grp_p"
    personal = StudyFacts(UID, department_id=None, owner_id="usr_owner")
    owned = decide(colleague, UID, facts(study=personal))
    assert owned.images and owned.via == "group" and owned.report == "read"


def test_a_colleague_owning_a_department_study_opens_it_to_no_group_practice():
    """A hospital physician who uploads for their department is the exam's owner; once they
    joined an outside group practice, the practice opened every study they had uploaded for
    the department. A department's studies leave it only by a share (logged, revocable)."""
    colleague = Subject(id="usr_c", colleagues={"usr_owner": "grp_p"})
    assert STUDY.department_id and STUDY.owner_id == "usr_owner"
    refused = decide(colleague, UID, facts())
    assert not refused.images and refused.via is None


def test_department_recipient_gives_every_department_member_access():
    b = bucket(recipients=(Recipient("dep_x", "department"),))
    member = Subject(id="usr_q", department_ids=frozenset({"dep_x"}))
    assert decide(member, UID, facts(b)).via == "grant"


def test_reshare_falls_when_its_parent_bucket_is_revoked():
    parent = bucket(bucket_id="bkt_p", recipients=(Recipient("usr_sender", "user"),))
    child = bucket(bucket_id="bkt_c", parent_bucket_id="bkt_p", sender_id="usr_sender")
    senders = {"usr_sender": Subject(id="usr_sender")}
    assert decide(DOCTOR, UID, facts(child, parents={"bkt_p": parent}, senders=senders)).images
    for broken in (
        replace(parent, revoked=True),
        replace(parent, revoked_recipient_ids=frozenset({"usr_sender"})),
        replace(parent, valid_until=NOW - timedelta(seconds=1)),
    ):
        d = decide(DOCTOR, UID, facts(child, parents={"bkt_p": broken}, senders=senders))
        assert d.refusal == "revoked"


def test_break_the_glass_opens_for_a_limited_time_without_download():
    d = decide(DOCTOR, UID, facts(break_glass_until=NOW + timedelta(hours=24)))
    assert d.images and d.via == "break_the_glass" and not d.download and d.report == "read"
    gone = decide(DOCTOR, UID, facts(break_glass_until=NOW, now=NOW))
    assert not gone.images


def test_service_desk_sees_every_study_and_says_so():
    desk = Subject(id="usr_desk", roles=frozenset({"service_desk"}))
    d = decide(desk, UID, facts())
    assert d.images and d.via == "service_desk" and not d.download


def test_deactivated_account_sees_nothing():
    d = decide(replace(DOCTOR, deactivated=True), UID, facts(bucket()))
    assert not d.images and d.refusal == "deactivated"


def test_auditor_without_grant_sees_no_study():
    auditor = Subject(id="usr_a", roles=frozenset({"auditor"}))
    assert not decide(auditor, UID, facts()).images


PATIENT = Subject(id="ref:ABC", kind="patient", reference_id="AB12CD34EF", token_study_uid=UID)
REF = ReferenceFacts(
    "AB12CD34EF", UID, valid_from=NOW - timedelta(days=1), valid_to=NOW + timedelta(days=1)
)


def test_patient_sees_only_the_study_of_the_token_through_a_usable_reference_number():
    d = decide(PATIENT, UID, facts(reference=REF))
    assert d.images and d.via == "reference_number" and d.reference_id == "AB12CD34EF"
    assert d.report == "read" and not d.download
    other = decide(PATIENT, "9.9.9", facts(reference=REF))
    assert other.refusal == "not_your_study"
    with pytest.raises(StudyNotFound):
        refuse(other)


def test_patient_report_follows_department_policy_and_is_never_write():
    assert decide(PATIENT, UID, facts(reference=REF, patient_report="none")).report == "none"
    assert decide(PATIENT, UID, facts(reference=REF, patient_report="write")).report == "read"


@pytest.mark.parametrize(
    "change,refusal",
    [
        (dict(revoked=True), "reference_number_revoked"),
        (dict(complies_with_rule=False), "reference_number_breaks_rule"),
        (dict(valid_from=NOW + timedelta(seconds=1)), "reference_number_not_yet_valid"),
        (dict(valid_to=NOW), "reference_number_expired"),
    ],
)
def test_patient_refused_on_unusable_reference_number(change, refusal):
    assert decide(PATIENT, UID, facts(reference=replace(REF, **change))).refusal == refusal


def test_patient_without_known_reference_number_is_refused():
    assert decide(PATIENT, UID, facts()).refusal == "reference_number_unknown"
