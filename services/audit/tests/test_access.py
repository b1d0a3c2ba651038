"""Unit tests of the Access tab (point 2) and of "who could open it at T" (point 3)."""

from __future__ import annotations

from datetime import timedelta

from studyshare.audit.domain.access import Directory, StudyAccessFold, access_at
from studyshare.audit.domain.entries import build_entry
from studyshare.plumbing.reference_ids import reference_id

from .scenario import T0, full_story


def story_entries():
    story, ids = full_story(tag="0a0d17ab")
    buckets = {ids["bucket"]: [ids["uid"]], ids["bucket2"]: [ids["uid"]]}
    entries = [
        build_entry(e, buckets.get(e.aggregate_id, []) if e.aggregate_type == "Bucket" else [])
        for e in story.events
    ]
    return entries, ids


def overview(now):
    entries, ids = story_entries()
    fold = StudyAccessFold(ids["uid"])
    fold.fold([e for e in entries if ids["uid"] in e["study_uids"]])
    return fold.overview(now), ids


def test_users_and_groups_show_type_validity_and_who_granted_when():
    tab, ids = overview(T0 + timedelta(hours=1))
    alice = next(u for u in tab["users"] if u["recipient_id"] == ids["alice"])
    assert alice["access_level"] == "images_report_read"
    assert alice["granted_by"] == ids["sender"]
    assert alice["granted_at"] == T0 + timedelta(minutes=5)
    assert alice["valid_until"] == T0 + timedelta(minutes=4, days=30)
    assert alice["state"] == "revoked" and alice["revoked_by"] == ids["sender"]
    group = tab["groups"][0]
    assert group["recipient_id"] == ids["group"] and group["state"] == "active"
    carol = next(u for u in tab["users"] if u["recipient_id"] == ids["carol"])
    assert carol["unlimited"] and carol["state"] == "revoked"


def test_break_the_glass_list_keeps_who_when_and_why():
    tab, ids = overview(T0 + timedelta(hours=1))
    assert [(b["user_id"], b["reason"]) for b in tab["break_the_glass"]] == [
        (ids["glass"], "emergency: patient unconscious")
    ]


def test_transfers_and_downloads_are_listed():
    tab, ids = overview(T0 + timedelta(hours=1))
    assert [(t["destination_id"], t["status"]) for t in tab["transfers"]] == [
        ("PACS_A", "done"),
        ("RSW", "retrying"),
    ]
    assert [(t["destination_id"], t["attempts"]) for t in tab["rsw"]] == [("RSW", 2)]
    assert [d["user_id"] for d in tab["downloads"]] == [ids["owner"]]


def test_buckets_have_their_state_and_recipients():
    tab, ids = overview(T0 + timedelta(hours=1))
    states = {b["bucket_id"]: b["state"] for b in tab["buckets"]}
    assert states == {ids["bucket"]: "active", ids["bucket2"]: "revoked"}
    bucket = next(b for b in tab["buckets"] if b["bucket_id"] == ids["bucket"])
    assert bucket["unlocked_by"] == "usr_desk" and bucket["two_factor"]
    assert {r["recipient_id"]: r["state"] for r in bucket["recipients"]} == {
        ids["alice"]: "revoked",
        ids["group"]: "active",
    }
    later, _ = overview(T0 + timedelta(days=31))
    assert {b["bucket_id"]: b["state"] for b in later["buckets"]}[ids["bucket"]] == "expired"


def test_bucket_state_is_locked_between_lock_and_unlock():
    entries, ids = story_entries()
    fold = StudyAccessFold(ids["uid"])
    fold.fold(
        [e for e in entries if ids["uid"] in e["study_uids"]],
        until=T0 + timedelta(minutes=17),
    )
    tab = fold.overview(T0 + timedelta(minutes=17))
    bucket = next(b for b in tab["buckets"] if b["bucket_id"] == ids["bucket"])
    assert bucket["state"] == "locked" and bucket["failed_attempts"] == 5


def test_reference_numbers_show_validity_pincode_and_failed_attempts():
    tab, ids = overview(T0 + timedelta(hours=1))
    (ref,) = tab["reference_numbers"]
    assert ref["reference_id"] == ids["ref_id"]
    assert ids["ref"] not in repr(tab), "the number itself never: only its reference id"
    assert ref["valid_from"] == T0 + timedelta(minutes=3)
    assert ref["pincode_required"] and ref["pincode_set"]
    assert ref["pincode_failed_attempts"] == 2
    assert ref["logins"] == 1 and ref["state"] == "active"
    assert "pincode_hash" not in ref


def could_open(minutes: float):
    entries, ids = story_entries()
    t = T0 + timedelta(minutes=minutes)
    fold = StudyAccessFold(ids["uid"])
    fold.fold([e for e in entries if ids["uid"] in e["study_uids"]], until=t)
    directory = Directory()
    identity = ("Group", "User", "Department")
    directory.fold([e for e in entries if e["aggregate_type"] in identity], until=t)
    rows = access_at(fold, directory, t)
    return {
        (r["principal_id"], r["via"], r.get("bucket_id") or r.get("through")) for r in rows
    }, ids


def test_point_in_time_after_the_share_names_recipients_and_group_members():
    rows, ids = could_open(5.5)
    assert (ids["alice"], "grant", ids["bucket"]) in rows
    assert (ids["bob"], "group", ids["bucket"]) in rows
    assert (ids["dave"], "group", ids["bucket"]) not in rows, "dave joined the group at T0+6"
    assert (ids["carol"], "department", ids["dep"]) in rows
    assert (ids["owner"], "owner", None) in rows
    rows, _ = could_open(6.5)
    assert (ids["dave"], "group", ids["bucket"]) in rows


def test_point_in_time_while_locked_nobody_opens_through_the_bucket():
    rows, ids = could_open(17.5)
    assert not any(bucket == ids["bucket"] for _, _, bucket in rows)


def test_point_in_time_after_revocation_and_during_break_the_glass():
    rows, ids = could_open(20.5)
    assert (ids["alice"], "grant", ids["bucket"]) not in rows
    assert (ids["bob"], "group", ids["bucket"]) in rows
    assert (ids["glass"], "break_the_glass", None) in rows
    rows, _ = could_open(60 * 3)
    assert (ids["glass"], "break_the_glass", None) not in rows, "break-the-glass lasted an hour"


def test_point_in_time_reference_number_needs_its_pincode_and_before_receipt_nobody():
    rows, ids = could_open(5)
    assert not any(p == f"ref:{ids['ref_id']}" for p, _, _ in rows), "pincode not set yet"
    rows, _ = could_open(21.5)
    assert (f"ref:{ids['ref_id']}", "reference_number", None) in rows
    rows, _ = could_open(0)
    assert rows == set()


def test_the_departments_current_rule_is_checked_on_the_numbers_shape_not_the_number():
    """The log has reference ids, not numbers: a rule made stricter later retires the weaker
    numbers by their `number_shape` (as the study store decides); a v1 issue, which carried
    the number, is upcast with its shape (and named by its number: accepted)."""
    from studyshare.contracts.envelope import EventEnvelope
    from studyshare.contracts.events import identity, study

    from .scenario import REFERENCE_SECRET, Story

    s = Story(tag="c0301e")
    uid = "1.2.826.0.1.778"
    s.add(study.StudyReceived(study_uid=uid, department_id="dep_x", owner_id="usr_o"), uid)
    numbers = {"AB12CD34EF": True, "AB12CD34EF56": True, "1234567890": True, "AB1234": False}
    ids = {n: reference_id(n, REFERENCE_SECRET) for n in numbers}
    for number, flag in numbers.items():
        s.add(
            study.ReferenceNumberIssued(
                reference_id=ids[number],
                number_shape=study.ReferenceNumberShape.of(number),
                study_uid=uid,
                department_id="dep_x",
                complies_with_rule=flag,
            ),
            f"ref_{ids[number]}",
            "usr_o",
        )
    s.events.append(
        EventEnvelope(
            event_type="ReferenceNumberIssued",
            schema_version=1,
            aggregate_type="ReferenceNumber",
            aggregate_id="ref_ZZ12345678",
            aggregate_version=1,
            occurred_at=s.at(0),
            correlation_id="c-v1",
            payload={"reference_number": "ZZ12345678", "study_uid": uid, "department_id": "dep_x"},
        )
    )
    stricter = identity.ReferenceNumberRule(length=12, alphabet="alphanumeric")
    s.add(
        identity.DepartmentPolicySet(
            department_id="dep_x", reference_number_rule=stricter, set_by="usr_adm"
        ),
        "dep_x",
        "usr_adm",
        step=30,
    )
    entries = [build_entry(e) for e in s.events]

    def patients(minutes: float) -> set[str]:
        t = T0 + timedelta(minutes=minutes)
        fold = StudyAccessFold(uid)
        fold.fold([e for e in entries if uid in e["study_uids"]], until=t)
        directory = Directory()
        directory.fold([e for e in entries if e["aggregate_type"] == "Department"], until=t)
        return {
            r["reference_id"]
            for r in access_at(fold, directory, t)
            if r["principal_kind"] == "patient"
        }

    default_rule = {ids["AB12CD34EF"], ids["AB12CD34EF56"], "ZZ12345678"}
    assert patients(10) == default_rule, "digits only, or flagged when issued: not usable"
    assert patients(60) == {ids["AB12CD34EF56"]}, "twelve characters from now on"


def test_an_accepted_invitation_counts_for_its_account_from_the_moment_it_was_accepted():
    from studyshare.contracts.events import share, study

    from .scenario import Story

    s = Story(tag="1nv17e")
    uid, bucket, invited = "1.2.826.0.1.777", s.id("bkt"), "email:new@example.org"
    s.add(study.StudyReceived(study_uid=uid, department_id="dep_x", owner_id="usr_o"), uid)
    s.add(
        share.StudyShared(
            bucket_id=bucket,
            study_uids=(uid,),
            recipients=(share.RecipientRef(recipient_id=invited, kind="email"),),
            sender_id="usr_o",
            access_level="images_report_read",
            reason="second opinion",
            language="en",
            valid_until=T0 + timedelta(days=30),
        ),
        bucket,
        "usr_o",
    )
    s.add(
        share.InvitationAccepted(bucket_id=bucket, recipient_id=invited, user_id="usr_new"),
        bucket,
        "usr_new",
        step=10,
    )
    entries = [build_entry(e, [uid] if e.aggregate_type == "Bucket" else []) for e in s.events]
    assert "usr_new accepted the invitation" in entries[-1]["summary"]

    def who(minutes: float) -> set[str]:
        t = T0 + timedelta(minutes=minutes)
        fold = StudyAccessFold(uid)
        fold.fold(entries, until=t)
        return {r["principal_id"] for r in access_at(fold, Directory(), t)}

    assert invited in who(5) and "usr_new" not in who(5), "before accepting: the address"
    assert "usr_new" in who(13) and invited not in who(13)


def test_removing_the_study_from_a_bucket_is_its_revocation_for_that_study_only():
    """Issue 16, point 10: the Access tab's "remove study from bucket" is `AccessRevoked` with
    scope `study` (the tab shows who removed it and when); another study's removal does not
    touch this one."""
    entries, ids = story_entries()
    bucket = ids["bucket"]
    at = T0 + timedelta(minutes=50)

    def revoked(study_uid: str) -> dict:
        return {
            "event_id": f"evt-remove-{study_uid}",
            "event_type": "AccessRevoked",
            "aggregate_type": "Bucket",
            "aggregate_id": bucket,
            "aggregate_version": 99,
            "occurred_at": at,
            "actor": {"id": ids["sender"]},
            "payload": {
                "bucket_id": bucket,
                "scope": "study",
                "study_uid": study_uid,
                "revoked_by": ids["sender"],
            },
            "study_uids": [ids["uid"]],
        }

    other = StudyAccessFold(ids["uid"])
    other.fold([*(e for e in entries if ids["uid"] in e["study_uids"]), revoked("1.2.999")])
    row = next(b for b in other.overview(at)["buckets"] if b["bucket_id"] == bucket)
    assert row["state"] == "active" and row["study_removed_at"] is None

    fold = StudyAccessFold(ids["uid"])
    fold.fold([*(e for e in entries if ids["uid"] in e["study_uids"]), revoked(ids["uid"])])
    row = next(b for b in fold.overview(at)["buckets"] if b["bucket_id"] == bucket)
    assert row["state"] == "revoked"
    assert (row["study_removed_at"], row["study_removed_by"]) == (at, ids["sender"])


def test_a_lapsed_group_membership_opens_nothing_through_the_group_until_confirmed():
    """Issue 16, point 5: the Access tab follows the study store's decision."""
    t = T0

    def entry(event_type, minutes, **payload):
        return {
            "event_type": event_type,
            "occurred_at": t + timedelta(minutes=minutes),
            "payload": payload,
            "aggregate_version": minutes,
        }

    created = entry("GroupCreated", 1, group_id="g", primary_contact_id="a", member_ids=["b"])
    lapsed = entry("GroupMembershipLapsed", 2, group_id="g", user_id="b", due_since=t)
    confirmed = entry("GroupMembershipConfirmed", 3, group_id="g", user_id="b", confirmed_until=t)
    before, during, after = Directory(), Directory(), Directory()
    before.fold([created], t + timedelta(minutes=1))
    during.fold([created, lapsed], t + timedelta(minutes=2))
    after.fold([created, lapsed, confirmed], t + timedelta(minutes=3))
    assert before.group_members("g") == ["a", "b"]
    assert during.group_members("g") == ["a"]
    assert after.group_members("g") == ["a", "b"]
