"""Issue 15, point 3, as pure rules: a re-share is valid only while its sender still holds
the parent grant, in their own name or through a department or group they are still in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from studyshare.access_policy.rules import (
    AccessFacts,
    Bucket,
    Recipient,
    StudyFacts,
    Subject,
    decide,
    sender_holds,
)
from studyshare.study_store.domain.access_rules import (
    GrantRevoked,
    refuse,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
UID = "1.2.3.9"
STUDY = StudyFacts(UID, department_id="dep_src", owner_id="usr_owner")
THIRD = Subject(id="usr_third", roles=frozenset({"physician"}))


def parent(*recipients: Recipient, **kw) -> Bucket:
    return Bucket(
        bucket_id="bkt_parent",
        study_uids=frozenset({UID}),
        recipients=recipients,
        access_level="images_report_read",
        sender_id="usr_owner",
        valid_until=NOW + timedelta(days=30),
        **kw,
    )


CHILD = Bucket(
    bucket_id="bkt_child",
    study_uids=frozenset({UID}),
    recipients=(Recipient("usr_third", "user"),),
    access_level="images_report_read",
    sender_id="usr_mid",
    valid_until=NOW + timedelta(days=30),
    parent_bucket_id="bkt_parent",
)


def third_opens(p: Bucket, sender: Subject | None, child: Bucket = CHILD) -> str | None:
    senders = {sender.id: sender} if sender is not None else {}
    facts = AccessFacts(
        now=NOW, study=STUDY, buckets=(child,), parents={p.bucket_id: p}, senders=senders
    )
    d = decide(THIRD, UID, facts)
    return d.bucket_id if d.images else d.refusal


def test_a_reshare_holds_while_its_sender_is_in_the_recipient_department():
    p = parent(Recipient("dep_rx", "department"))
    mid = Subject(id="usr_mid", department_ids=frozenset({"dep_rx"}))
    assert third_opens(p, mid) == "bkt_child"


def test_revoking_the_department_recipient_ends_its_members_reshares():
    p = parent(Recipient("dep_rx", "department"), revoked_recipient_ids=frozenset({"dep_rx"}))
    mid = Subject(id="usr_mid", department_ids=frozenset({"dep_rx"}))
    assert third_opens(p, mid) == "revoked"
    facts = AccessFacts(
        now=NOW, study=STUDY, buckets=(CHILD,), parents={"bkt_parent": p}, senders={"usr_mid": mid}
    )
    with pytest.raises(GrantRevoked):
        refuse(decide(THIRD, UID, facts))


def test_revoking_the_group_recipient_ends_its_members_reshares():
    p = parent(Recipient("grp_x", "group"))
    mid = Subject(id="usr_mid", group_ids=frozenset({"grp_x"}))
    assert third_opens(p, mid) == "bkt_child"
    revoked = replace(p, revoked_recipient_ids=frozenset({"grp_x"}))
    assert third_opens(revoked, mid) == "revoked"


def test_a_sender_who_left_the_department_or_group_no_longer_holds_the_parent():
    by_department = parent(Recipient("dep_rx", "department"))
    by_group = parent(Recipient("grp_x", "group"))
    left = Subject(id="usr_mid")
    assert third_opens(by_department, left) == "revoked"
    assert third_opens(by_group, left) == "revoked"


def test_a_sender_holding_the_parent_another_way_keeps_the_reshare():
    p = parent(
        Recipient("dep_rx", "department"),
        Recipient("usr_mid", "user"),
        revoked_recipient_ids=frozenset({"dep_rx"}),
    )
    assert third_opens(p, Subject(id="usr_mid")) == "bkt_child"


def test_an_unknown_parent_or_sender_holds_nothing():
    p = parent(Recipient("usr_mid", "user"))
    assert third_opens(p, None) == "revoked"
    facts = AccessFacts(now=NOW, study=STUDY, buckets=(CHILD,), parents={})
    assert decide(THIRD, UID, facts).refusal == "revoked"


def test_the_chain_is_checked_up_to_the_first_share():
    top = parent(Recipient("dep_rx", "department"))
    middle = replace(
        CHILD,
        bucket_id="bkt_middle",
        recipients=(Recipient("usr_mid", "user"),),
        sender_id="usr_first",
    )
    child = replace(CHILD, parent_bucket_id="bkt_middle")
    first = Subject(id="usr_first", department_ids=frozenset({"dep_rx"}))
    mid = Subject(id="usr_mid")
    facts = AccessFacts(
        now=NOW,
        study=STUDY,
        buckets=(child,),
        parents={"bkt_parent": top, "bkt_middle": middle},
        senders={"usr_first": first, "usr_mid": mid},
    )
    assert decide(THIRD, UID, facts).images
    gone = replace(facts, senders={"usr_first": Subject(id="usr_first"), "usr_mid": mid})
    assert decide(THIRD, UID, gone).refusal == "revoked"


def test_holding_ignores_colleagues_and_revoked_routes():
    p = parent(Recipient("usr_colleague", "user"))
    mid = Subject(id="usr_mid", colleagues={"usr_colleague": "grp_x"})
    assert not sender_holds(mid, p)
    assert sender_holds(Subject(id="usr_colleague"), p)
    assert not sender_holds(
        Subject(id="usr_colleague"),
        replace(p, revoked_recipient_ids=frozenset({"usr_colleague"})),
    )
