"""My shares (`GET /api/shares/sent`) and favourites with their names: what the portal's
"my shares" list and the share dialog's star show."""

from __future__ import annotations

from datetime import timedelta

from .conftest import STUDY_A, STUDY_B, STUDY_C


async def test_my_shares_lists_the_buckets_i_sent_latest_first_with_studies_and_names(env):
    first = await env.share(study_uids=[STUDY_A, STUDY_B])
    env.clock.now += timedelta(minutes=1)
    second = await env.share(
        study_uids=[STUDY_C],
        recipients=[
            {"kind": "group", "id": "grp_1"},
            {"kind": "email", "email": "New@Example.org"},
        ],
        anonymize=True,
    )
    await env.share(sender="usr_staff2")  # someone else's share is not mine

    page = await env.client.get("/api/shares/sent", headers=env.as_("usr_sender"))
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["total"] == 2
    assert [b["bucket_id"] for b in body["items"]] == [second["bucket_id"], first["bucket_id"]]
    latest, earlier = body["items"]
    assert [s["description"] for s in earlier["studies"]] == ["CT thorax", "CT abdomen"]
    assert earlier["studies"][0]["patient_initials"] == "J.D."
    assert [r["name"] for r in earlier["recipients"]] == ["Dr R1"]
    assert latest["studies"][0]["patient_initials"] == "Anonymous"
    assert [r["name"] for r in latest["recipients"]] == ["Group practice Zuid", "new@example.org"]
    assert earlier["reason"] == "second opinion", "the sender sees the reason"

    one = await env.client.get(
        "/api/shares/sent", params={"limit": 1, "offset": 1}, headers=env.as_("usr_sender")
    )
    assert [b["bucket_id"] for b in one.json()["items"]] == [first["bucket_id"]]
    assert one.json()["total"] == 2
    recipient = await env.client.get("/api/shares/sent", headers=env.as_("usr_r1"))
    assert recipient.json()["items"] == [], "a recipient sent nothing"


async def test_favourites_carry_the_recipients_names(env):
    await env.share(add_to_favorites=["usr_r1"])
    for body in ({"kind": "group", "id": "grp_1"}, {"kind": "department", "id": "dep_1"}):
        added = await env.client.post("/api/favorites", json=body, headers=env.as_("usr_sender"))
        assert added.status_code == 201, added.text
    favs = (await env.client.get("/api/favorites", headers=env.as_("usr_sender"))).json()
    assert {f["recipient_id"]: f["name"] for f in favs} == {
        "usr_r1": "Dr R1",
        "grp_1": "Group practice Zuid",
        "dep_1": "Radiology Leuven",
    }
