"""Issue 4, point 6: studies shared with me and with my groups, with sender, message and its
unread/read state (red until the study is opened, then green), label, urgent, valid until."""

from __future__ import annotations

from datetime import timedelta

from studyshare.contracts.events.identity import GroupMemberAdded, GroupMemberRemoved
from studyshare.contracts.events.study import StudyAccessed, StudyFirstOpened

from .conftest import STUDY_A, STUDY_B, STUDY_C


async def mine(env, user: str, **params):
    response = await env.client.get("/api/shared-with-me", params=params, headers=env.as_(user))
    assert response.status_code == 200, response.text
    return response.json()


async def test_recipient_sees_sender_message_label_urgent_and_validity(env):
    out = await env.share(
        study_uids=[STUDY_A, STUDY_C],
        message="Please compare with last year",
        label={"text": "oncology", "scope": "user"},
        urgent=True,
    )
    view = await mine(env, "usr_r1")
    assert view["total"] == 2
    item = view["items"][0]
    assert item["bucket_id"] == out["bucket_id"]
    assert item["sender"] == {"id": "usr_sender", "name": "Dr Sender"}
    assert item["message"] == "Please compare with last year"
    assert item["message_state"] == "unread"
    assert item["label"] == {"text": "oncology", "scope": "user"}
    assert item["urgent"] is True
    assert item["valid_until"] == out["confirmation"]["valid_until"]
    assert item["description"] in ("CT thorax", "MR knee")
    assert "reason" not in item
    assert (await mine(env, "usr_r2"))["total"] == 0


async def test_message_turns_from_unread_to_read_once_the_study_is_opened(env):
    await env.share(study_uids=[STUDY_A, STUDY_C], message="see me")
    await env.seed(
        StudyAccessed(study_uid=STUDY_A, action="view", via="grant", user_id="usr_r1"),
        aggregate_ids=["acc_1"],
    )
    states = {i["study_uid"]: i["message_state"] for i in (await mine(env, "usr_r1"))["items"]}
    assert states == {STUDY_A: "read", STUDY_C: "unread"}
    unread = await mine(env, "usr_r1", unread=True)
    assert [i["study_uid"] for i in unread["items"]] == [STUDY_C]


async def test_the_first_open_marks_the_message_read_without_waiting_for_the_minute(env):
    """Issue 16, point 12: the study store appends `StudyFirstOpened` at the first open
    (the minute's `StudyAccessed` comes later); it alone turns the message green."""
    out = await env.share(study_uids=[STUDY_A, STUDY_C], message="see me")
    await env.seed(
        StudyFirstOpened(study_uid=STUDY_C, user_id="usr_r1", bucket_id=out["bucket_id"]),
        aggregate_ids=["opn_1"],
    )
    states = {i["study_uid"]: i["message_state"] for i in (await mine(env, "usr_r1"))["items"]}
    assert states == {STUDY_A: "unread", STUDY_C: "read"}


async def test_group_members_see_group_shares_and_membership_changes_apply(env):
    await env.share(recipients=[{"kind": "group", "id": "grp_1"}], access_level="images")
    for member in ("usr_g1", "usr_g2"):
        items = (await mine(env, member))["items"]
        assert [i["via"] for i in items] == [[{"id": "grp_1", "name": None}]]
    assert (await mine(env, "usr_r3"))["total"] == 0
    await env.seed(GroupMemberAdded(group_id="grp_1", user_id="usr_r3", added_by="t"))
    assert (await mine(env, "usr_r3"))["total"] == 1
    await env.seed(GroupMemberRemoved(group_id="grp_1", user_id="usr_g2", removed_by="t"))
    assert (await mine(env, "usr_g2"))["total"] == 0


async def test_filters_and_pagination(env):
    await env.share(study_uids=[STUDY_A], urgent=True)
    env.clock.now += timedelta(seconds=1)
    await env.share(study_uids=[STUDY_B], label={"text": "knee", "scope": "user"})
    env.clock.now += timedelta(seconds=1)
    await env.share(study_uids=[STUDY_C])
    assert [i["study_uid"] for i in (await mine(env, "usr_r1", urgent=True))["items"]] == [STUDY_A]
    assert [i["study_uid"] for i in (await mine(env, "usr_r1", label="knee"))["items"]] == [STUDY_B]
    assert (await mine(env, "usr_r1", study_uid=STUDY_C))["total"] == 1
    page = await mine(env, "usr_r1", limit=2, offset=2)
    assert page["total"] == 3 and len(page["items"]) == 1
    assert [i["study_uid"] for i in (await mine(env, "usr_r1"))["items"]] == [
        STUDY_C,
        STUDY_B,
        STUDY_A,
    ]


async def test_a_share_is_visible_to_the_recipient_in_the_same_request(env):
    """The bucket read model is written with the append, not later by a consumer."""
    out = await env.share()
    items = (await mine(env, "usr_r1"))["items"]
    assert [i["bucket_id"] for i in items] == [out["bucket_id"]]


async def test_each_study_has_its_place_in_the_share_and_a_share_can_be_asked_for_alone(env):
    """The anonymized share mail links `/shared-with-me/{position}?bucket=`: the portal finds
    the study by the share and its place in it, as the mail numbers them."""
    first = await env.share(study_uids=[STUDY_C, STUDY_A])
    env.clock.now += timedelta(seconds=1)
    await env.share(study_uids=[STUDY_B])
    only = await mine(env, "usr_r1", bucket_id=first["bucket_id"])
    assert only["total"] == 2
    assert {i["study_uid"]: i["position"] for i in only["items"]} == {STUDY_C: 1, STUDY_A: 2}
    assert (await mine(env, "usr_r1", bucket_id="bkt_unknown"))["total"] == 0


async def test_a_later_page_and_the_filters_see_what_the_first_page_sees(env):
    """The list is filtered over the bucket views and read marks, and only its page is read
    from the directory (issue 19): a later page has its studies' details, an anonymized study
    is found by the UID its recipient sees (not by its own), and the unread filter pages too."""
    await env.share(study_uids=[STUDY_A])
    env.clock.now += timedelta(seconds=1)
    anonymized = await env.share(study_uids=[STUDY_B], anonymize=True)
    env.clock.now += timedelta(seconds=1)
    await env.share(study_uids=[STUDY_C])
    await env.seed(
        StudyAccessed(study_uid=STUDY_C, action="view", via="grant", user_id="usr_r1"),
        aggregate_ids=["acc_1"],
    )
    last = (await mine(env, "usr_r1", limit=1, offset=2))["items"]
    assert [(i["study_uid"], i["description"], i["read"]) for i in last] == [
        (STUDY_A, "CT thorax", False)
    ]
    [shown] = (await mine(env, "usr_r1", bucket_id=anonymized["bucket_id"]))["items"]
    assert shown["study_uid"] != STUDY_B and shown["patient_initials"] == "Anonymous"
    assert [
        i["bucket_id"] for i in (await mine(env, "usr_r1", study_uid=shown["study_uid"]))["items"]
    ] == [anonymized["bucket_id"]]
    assert (await mine(env, "usr_r1", study_uid=STUDY_B))["total"] == 0
    unread = await mine(env, "usr_r1", unread=True, limit=1, offset=1)
    assert unread["total"] == 2 and [i["study_uid"] for i in unread["items"]] == [STUDY_A]
    read = await mine(env, "usr_r1", unread=False)
    assert [(i["study_uid"], i["read"]) for i in read["items"]] == [(STUDY_C, True)]
