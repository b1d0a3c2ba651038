"""Issue 15, points 3 and 4, in "who could open it at T": a re-share counts only while its
sender holds the parent grant; break-the-glass never over a bucket the user was in that was
revoked, expired or locked (the study store's rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from studyshare.audit.domain.access import Directory, StudyAccessFold, access_at

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
UID = "1.2.3.5"


def entry(minute: int, event_type: str, stream: str, **payload: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "stream": stream,
        "aggregate_version": minute,
        "occurred_at": T0 + timedelta(minutes=minute),
        "payload": payload,
    }


def shared(minute: int, bucket: str, recipients: list[tuple[str, str]], **kw) -> dict:
    return entry(
        minute,
        "StudyShared",
        bucket,
        bucket_id=bucket,
        study_uids=[UID],
        recipients=[{"recipient_id": r, "kind": k} for r, k in recipients],
        access_level="images_report_read",
        valid_until=(T0 + timedelta(days=30)).isoformat(),
        **kw,
    )


def could_open(entries: list[dict], minute: float) -> set[tuple[str, str, str | None]]:
    t = T0 + timedelta(minutes=minute)
    fold = StudyAccessFold(UID)
    fold.fold([e for e in entries if e["stream"].startswith(("stu", "bkt", "btg"))], until=t)
    directory = Directory()
    directory.fold([e for e in entries if e["stream"].startswith(("usr", "grp", "dep"))], until=t)
    rows = access_at(fold, directory, t)
    return {(r["principal_id"], r["via"], r.get("bucket_id")) for r in rows}


BASE = [
    entry(0, "StudyReceived", "stu_5", department_id="dep_src", owner_id="usr_src"),
    entry(0, "DepartmentCreated", "dep_src", department_id="dep_src", institution_id="ins_h"),
    entry(0, "DepartmentCreated", "dep_er", department_id="dep_er", institution_id="ins_h"),
    entry(
        0,
        "UserRegistered",
        "usr_t1",
        user_id="usr_t1",
        roles=["physician"],
        department_ids=["dep_er"],
    ),
    entry(1, "UserRegistered", "usr_mid", user_id="usr_mid", department_ids=["dep_rx"]),
    entry(1, "GroupCreated", "grp_x", group_id="grp_x", name="x", member_ids=["usr_gm"]),
    shared(2, "bkt_dep", [("dep_rx", "department")], sender_id="usr_src"),
    shared(3, "bkt_grp", [("grp_x", "group")], sender_id="usr_src"),
    shared(4, "bkt_c1", [("usr_t1", "user")], sender_id="usr_mid", parent_bucket_id="bkt_dep"),
    shared(5, "bkt_c2", [("usr_t2", "user")], sender_id="usr_gm", parent_bucket_id="bkt_grp"),
]


def test_reshares_count_while_their_senders_hold_the_parent():
    rows = could_open(BASE, 6)
    assert ("usr_t1", "grant", "bkt_c1") in rows and ("usr_t2", "grant", "bkt_c2") in rows


def test_revoking_a_department_or_group_recipient_ends_their_reshares():
    entries = [
        *BASE,
        entry(7, "AccessRevoked", "bkt_dep", bucket_id="bkt_dep", scope="recipient",
              recipient_id="dep_rx", revoked_by="usr_src"),
        entry(7, "AccessRevoked", "bkt_grp", bucket_id="bkt_grp", scope="recipient",
              recipient_id="grp_x", revoked_by="usr_src"),
    ]  # fmt: skip
    rows = could_open(entries, 8)
    assert ("usr_t1", "grant", "bkt_c1") not in rows and ("usr_t2", "grant", "bkt_c2") not in rows
    assert ("usr_t1", "grant", "bkt_c1") in could_open(entries, 6.5), "before the revocation"


def test_a_sender_leaving_the_department_or_group_ends_their_reshares():
    entries = [
        *BASE,
        entry(7, "UserRolesChanged", "usr_mid", user_id="usr_mid", department_ids=[]),
        entry(7, "GroupMemberRemoved", "grp_x", group_id="grp_x", user_id="usr_gm"),
    ]
    rows = could_open(entries, 8)
    assert ("usr_t1", "grant", "bkt_c1") not in rows and ("usr_t2", "grant", "bkt_c2") not in rows


def test_an_unknown_parent_holds_nothing():
    orphan = shared(4, "bkt_o", [("usr_t3", "user")], sender_id="usr_x", parent_bucket_id="bkt_?")
    assert ("usr_t3", "grant", "bkt_o") not in could_open([*BASE, orphan], 6)


def test_break_the_glass_never_over_a_bucket_the_user_was_in():
    glass = entry(
        6,
        "BreakTheGlassUsed",
        "btg_1",
        user_id="usr_t1",
        study_uid=UID,
        reason="er",
        valid_until=(T0 + timedelta(hours=1)).isoformat(),
    )
    entries = [*BASE, glass]
    assert ("usr_t1", "break_the_glass", None) in could_open(entries, 7)
    revoked = entry(8, "AccessRevoked", "bkt_c1", bucket_id="bkt_c1", scope="bucket",
                    revoked_by="usr_mid")  # fmt: skip
    rows = could_open([*entries, revoked], 9)
    assert ("usr_t1", "break_the_glass", None) not in rows
