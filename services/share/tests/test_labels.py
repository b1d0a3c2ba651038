"""Labels to pick from in the share dialog (manual v2, "Add a label": "for the user or on group
level"): a user's own label is seen by that user only, a group's label by its members."""

from __future__ import annotations

import pytest

from studyshare.share.domain import exceptions, rules
from studyshare.share.domain.model import Labels


def test_a_label_is_trimmed_unique_in_its_list_and_bounded():
    labels = Labels("labels_usr_a")
    (added,) = labels.add("user", "usr_a", "lbl_1", "  Follow   up ", "usr_a")
    assert added.text == "Follow up"
    labels.apply(added)
    with pytest.raises(exceptions.LabelAlreadyExists):
        labels.add("user", "usr_a", "lbl_2", "FOLLOW UP", "usr_a")
    for text in ("", "   ", "x" * (rules.MAX_LABEL_TEXT + 1)):
        with pytest.raises(exceptions.LabelTextInvalid):
            labels.add("user", "usr_a", "lbl_3", text, "usr_a")
    for n in range(rules.MAX_LABELS - 1):
        labels.apply(labels.add("user", "usr_a", f"lbl_n{n}", f"label {n}", "usr_a")[0])
    with pytest.raises(exceptions.TooManyLabels):
        labels.add("user", "usr_a", "lbl_x", "one too many", "usr_a")
    with pytest.raises(exceptions.LabelNotFound):
        labels.remove("user", "usr_a", "lbl_unknown", "usr_a")


async def test_my_labels_are_mine_and_a_groups_labels_are_its_members(env):
    me, member, outsider = env.as_("usr_g1"), env.as_("usr_g2"), env.as_("usr_outsider")
    mine = await env.client.post("/api/labels", json={"text": "Urgent review"}, headers=me)
    assert mine.status_code == 201, mine.text
    group = await env.client.post(
        "/api/labels", json={"text": "Practice", "group_id": "grp_1"}, headers=me
    )
    assert group.status_code == 201 and group.json()["scope"] == "group"

    listed = (await env.client.get("/api/labels", headers=me)).json()
    assert [(x["text"], x["scope"]) for x in listed] == [
        ("Urgent review", "user"),
        ("Practice", "group"),
    ]
    assert listed[1]["group_name"] == "Group practice Zuid"
    theirs = (await env.client.get("/api/labels", headers=member)).json()
    assert [x["text"] for x in theirs] == ["Practice"], "a user label is seen only by its user"
    assert (await env.client.get("/api/labels", headers=outsider)).json() == []

    # an outsider can neither add to nor remove from the group's list, nor remove my label
    r = await env.client.post(
        "/api/labels", json={"text": "Sneaky", "group_id": "grp_1"}, headers=outsider
    )
    assert r.status_code == 403 and r.json()["rule"] == "NotAMemberOfGroup"
    for label in (mine.json(), group.json()):
        r = await env.client.delete(f"/api/labels/{label['label_id']}", headers=outsider)
        assert r.status_code == 404 and r.json()["rule"] == "LabelNotFound"
    r = await env.client.delete(f"/api/labels/{mine.json()['label_id']}", headers=member)
    assert r.status_code == 404, "another member does not remove my own label"

    r = await env.client.post("/api/labels", json={"text": " practice "}, headers=me)
    assert r.status_code == 201, "my list and the group's are separate lists"
    r = await env.client.post(
        "/api/labels", json={"text": "PRACTICE", "group_id": "grp_1"}, headers=member
    )
    assert r.status_code == 409 and r.json()["rule"] == "LabelAlreadyExists"
    r = await env.client.post("/api/labels", json={"text": "   "}, headers=me)
    assert r.status_code == 422 and r.json()["rule"] == "LabelTextInvalid"
    assert len((await env.client.get("/api/labels", headers=me)).json()) == 3, "unchanged"

    # a member removes the group's label; it is gone for every member
    r = await env.client.delete(f"/api/labels/{group.json()['label_id']}", headers=member)
    assert r.status_code == 204
    assert [x["text"] for x in (await env.client.get("/api/labels", headers=me)).json()] == [
        "practice",
        "Urgent review",
    ]
