"""My shares (`GET /api/shares/sent`) and favourites with their names: what the portal's
"my shares" list and the share dialog's star show."""

from __future__ import annotations

from datetime import timedelta

from studyshare.contracts.events.study import StudyFirstOpened

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


async def _locked(env) -> str:
    from .test_two_factor import request_code, verify, wrong

    bucket_id = (await env.share(two_factor=True))["bucket_id"]
    code = await request_code(env, bucket_id)
    for _ in range(5):
        await verify(env, bucket_id, wrong(code))
    return bucket_id


async def test_my_shares_filter_by_state_and_lock(env):
    """Issue 16, point 6: every bucket I sent with its state, paginated and filterable."""
    active = (await env.share())["bucket_id"]
    revoked = (await env.share())["bucket_id"]
    gone = await env.client.delete(f"/api/shares/{revoked}", headers=env.as_("usr_sender"))
    assert gone.status_code == 200, gone.text
    locked = await _locked(env)

    async def ids(**params) -> list[str]:
        page = await env.client.get(
            "/api/shares/sent", params=params, headers=env.as_("usr_sender")
        )
        assert page.status_code == 200, page.text
        assert page.json()["total"] == len(page.json()["items"])
        return sorted(b["bucket_id"] for b in page.json()["items"])

    assert await ids() == sorted([active, revoked, locked])
    assert await ids(status="revoked") == [revoked]
    assert await ids(status="active") == sorted([active, locked])
    assert await ids(locked="true") == [locked]
    assert await ids(status="active", locked="false") == [active]
    bad = await env.client.get(
        "/api/shares/sent", params={"status": "gone"}, headers=env.as_("usr_sender")
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


async def test_a_departments_locked_buckets_for_its_admins_and_the_service_desk(env):
    """Issue 16, point 6: the locked buckets of a department, listed for whoever may unlock
    them: its admins and the service desk."""
    locked = await _locked(env)
    await env.share()  # not locked: not listed

    admin = env.as_("usr_admin", "department_admin", admin_of=["dep_1"])
    page = await env.client.get(
        "/api/shares/locked", params={"department_id": "dep_1"}, headers=admin
    )
    assert page.status_code == 200, page.text
    assert [b["bucket_id"] for b in page.json()["items"]] == [locked]
    assert page.json()["items"][0]["locked"] is True
    desk = env.as_("usr_desk", "service_desk")
    everything = await env.client.get("/api/shares/locked", headers=desk)
    assert [b["bucket_id"] for b in everything.json()["items"]] == [locked]

    for who, params in (
        (env.as_("usr_sender"), {"department_id": "dep_1"}),  # staff, not an admin
        (env.as_("usr_admin", "department_admin", admin_of=["dep_1"]), {}),  # no department
        (env.as_("usr_admin", "department_admin", admin_of=["dep_2"]), {"department_id": "dep_1"}),
    ):
        refused = await env.client.get("/api/shares/locked", params=params, headers=who)
        assert refused.status_code == 403 and refused.json()["rule"] == "NotAllowedToUnlock"
    # unlocked: no longer listed
    unlocked = await env.client.post(f"/api/shares/{locked}/unlock", headers=admin)
    assert unlocked.status_code == 200
    page = await env.client.get(
        "/api/shares/locked", params={"department_id": "dep_1"}, headers=admin
    )
    assert page.json()["items"] == []


async def test_the_sender_sees_the_message_turn_read_when_a_recipient_opens_the_study(env):
    """Issue 16, point 12, the sender's side: "my shares" labels a share's message red
    (unread) until a recipient has opened one of its studies, then green (read), and says
    which recipients opened it."""
    shared = await env.share(
        study_uids=[STUDY_A, STUDY_C],
        recipients=[{"kind": "user", "id": "usr_r1"}, {"kind": "group", "id": "grp_1"}],
        message="please look at the left lung",
    )
    await env.share(study_uids=[STUDY_B])  # no message: no label

    async def sent() -> dict[str, dict]:
        page = await env.client.get("/api/shares/sent", headers=env.as_("usr_sender"))
        assert page.status_code == 200, page.text
        return {b["bucket_id"]: b for b in page.json()["items"]}

    before = await sent()
    with_message = before[shared["bucket_id"]]
    assert with_message["message_state"] == "unread"
    assert [r["opened"] for r in with_message["recipients"]] == [False, None]
    [without] = [b for k, b in before.items() if k != shared["bucket_id"]]
    assert without["message_state"] is None

    await env.seed(
        StudyFirstOpened(study_uid=STUDY_C, user_id="usr_r1", bucket_id=shared["bucket_id"]),
        aggregate_ids=["opn_s1"],
    )
    after = (await sent())[shared["bucket_id"]]
    assert after["message_state"] == "read"
    assert [r["opened"] for r in after["recipients"]] == [True, None]
