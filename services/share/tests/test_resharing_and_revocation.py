"""Issue 4, points 3 and 5: re-sharing within what one holds, revocation (recipient, study,
bucket) by sender, study owner or admin of the sending department, the cascade down the
re-share chain, and expiry at `valid_until` as an event."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from .conftest import STUDY_A, STUDY_B


async def reshare(env, parent: str, sender: str = "usr_r1", expect: int = 201, **body):
    body.setdefault("recipients", [{"kind": "user", "id": "usr_r2"}])
    return await env.share(sender=sender, expect=expect, parent_bucket_id=parent, **body)


async def test_reshare_needs_allow_further_sharing(env):
    parent = (await env.share())["bucket_id"]
    refused = await reshare(env, parent, expect=403)
    assert refused["rule"] == "FurtherSharingNotAllowed"
    assert await env.count(event_type="StudyShared") == 1


async def test_without_parent_bucket_id_the_held_bucket_is_found(env):
    refused = await env.share(
        sender="usr_r1", recipients=[{"kind": "user", "id": "usr_r2"}], expect=422
    )
    assert refused["rule"] == "StudyNotKnown", "not shared with them yet: as if not received"
    await env.share()
    refused = await env.share(
        sender="usr_r1", recipients=[{"kind": "user", "id": "usr_r2"}], expect=403
    )
    assert refused["rule"] == "FurtherSharingNotAllowed"
    parent = (await env.share(allow_further_sharing=True, allow_download=True))["bucket_id"]
    child = await env.share(sender="usr_r1", recipients=[{"kind": "user", "id": "usr_r2"}])
    assert child["confirmation"]["parent_bucket_id"] == parent
    assert await env.count(event_type="StudyShared") == 3


async def test_a_recipient_shares_further_through_the_bucket(env):
    parent = (await env.share(allow_further_sharing=True))["bucket_id"]
    child = await reshare(env, parent)
    assert child["confirmation"]["parent_bucket_id"] == parent
    [event] = await env.events(aggregate_id=child["bucket_id"])
    assert event["payload"]["parent_bucket_id"] == parent
    assert event["payload"]["sending_department_id"] == "dep_1"
    stranger = await reshare(env, parent, sender="usr_outsider", expect=403)
    assert stranger["rule"] == "NotARecipientOfBucket"


@pytest.mark.parametrize(
    ("parent_body", "child_body", "rule"),
    [
        (
            {"access_level": "images_report_read"},
            {"access_level": "images_report_write"},
            "AccessLevelExceedsHeld",
        ),
        ({"allow_download": False}, {"allow_download": True}, "DownloadExceedsHeld"),
        ({"anonymize": True}, {"anonymize": False}, "AnonymizationMustStay"),
        ({"two_factor": True}, {"two_factor": False}, "TwoFactorMustStay"),
        ({}, {"unlimited": True}, "ValidityExceedsHeld"),
        ({}, {"study_uids": [STUDY_B]}, "StudyNotInBucket"),
    ],
)
async def test_never_more_than_the_sharer_holds(env, parent_body, child_body, rule):
    parent = (await env.share(allow_further_sharing=True, **parent_body))["bucket_id"]
    refused = await reshare(env, parent, expect=422, **child_body)
    assert refused["rule"] == rule
    assert await env.count(event_type="StudyShared") == 1


async def test_reshare_validity_never_beyond_the_parents(env):
    until = env.clock.now + timedelta(days=5)
    parent = (await env.share(allow_further_sharing=True, valid_until=until.isoformat()))[
        "bucket_id"
    ]
    later = (until + timedelta(days=1)).isoformat()
    refused = await reshare(env, parent, expect=422, valid_until=later)
    assert refused["rule"] == "ValidityExceedsHeld"
    child = await reshare(env, parent)  # the default month is cut to the parent's validity
    assert datetime.fromisoformat(child["confirmation"]["valid_until"]) == until.replace(
        microsecond=0
    )


async def test_group_member_reshares_from_a_group_share(env):
    parent = (
        await env.share(allow_further_sharing=True, recipients=[{"kind": "group", "id": "grp_1"}])
    )["bucket_id"]
    await reshare(env, parent, sender="usr_g1")


async def revoke(env, path: str, who: str, *roles: str, **claims):
    return await env.client.delete(path, headers=env.as_(who, *roles, **claims))


async def test_revoke_a_recipient_a_study_and_the_whole_bucket(env):
    out = await env.share(
        study_uids=[STUDY_A, STUDY_B],
        recipients=[{"kind": "user", "id": "usr_r1"}, {"kind": "user", "id": "usr_r2"}],
    )
    b = out["bucket_id"]
    r = await revoke(env, f"/api/shares/{b}/recipients/usr_r2", "usr_sender")
    assert r.status_code == 200 and [x["revoked"] for x in r.json()["recipients"]] == [False, True]
    mine = (await env.client.get("/api/shared-with-me", headers=env.as_("usr_r2"))).json()
    assert mine["total"] == 0  # effective immediately
    r = await revoke(env, f"/api/shares/{b}/studies/{STUDY_B}", "usr_sender")
    assert r.json()["active_study_uids"] == [STUDY_A]
    items = (await env.client.get("/api/shared-with-me", headers=env.as_("usr_r1"))).json()["items"]
    assert [i["study_uid"] for i in items] == [STUDY_A]
    r = await revoke(env, f"/api/shares/{b}", "usr_sender")
    assert r.json()["status"] == "revoked"
    assert (await env.client.get("/api/shared-with-me", headers=env.as_("usr_r1"))).json()[
        "total"
    ] == 0
    scopes = [e["payload"]["scope"] for e in await env.events(event_type="AccessRevoked")]
    assert scopes == ["recipient", "study", "bucket"]
    again = await revoke(env, f"/api/shares/{b}", "usr_sender")
    assert again.status_code == 409 and again.json()["rule"] == "BucketNotActive"
    assert await env.count(event_type="AccessRevoked") == 3


async def test_who_may_revoke(env):
    b = (await env.share())["bucket_id"]
    for who, claims in (("usr_r1", {}), ("usr_outsider", {}), ("usr_staff2", {})):
        refused = await revoke(env, f"/api/shares/{b}", who, **claims)
        assert refused.status_code == 403 and refused.json()["rule"] == "NotAllowedToRevoke"
    assert await env.count(event_type="AccessRevoked") == 0
    owner = await revoke(env, f"/api/shares/{b}/recipients/usr_r1", "usr_owner")
    assert owner.status_code == 200  # the study owner, though someone else shared it
    b2 = (await env.share())["bucket_id"]
    admin = await revoke(
        env, f"/api/shares/{b2}", "usr_admin", "department_admin", admin_of=["dep_1"]
    )
    assert admin.status_code == 200
    by = [e["payload"]["revoked_by"] for e in await env.events(event_type="AccessRevoked")]
    assert by == ["usr_owner", "usr_admin"]


async def test_revoking_cascades_down_the_reshare_chain_and_the_access_tab_shows_it(env):
    root = (await env.share(allow_further_sharing=True, study_uids=[STUDY_A, STUDY_B]))["bucket_id"]
    both = [STUDY_A, STUDY_B]
    child = (await reshare(env, root, allow_further_sharing=True, study_uids=both))["bucket_id"]
    grandchild = (
        await reshare(
            env,
            child,
            sender="usr_r2",
            study_uids=both,
            recipients=[{"kind": "user", "id": "usr_r3"}],
        )
    )["bucket_id"]
    tab = await env.client.get(
        "/api/shares", params={"study_uid": STUDY_A}, headers=env.as_("usr_owner")
    )
    chain = {b["bucket_id"]: (b["parent_bucket_id"], b["children"]) for b in tab.json()}
    assert chain == {root: (None, [child]), child: (root, [grandchild]), grandchild: (child, [])}

    await revoke(env, f"/api/shares/{root}/studies/{STUDY_B}", "usr_sender")
    cascaded = await env.events(event_type="AccessRevoked")
    assert [
        (e["aggregate_id"], e["payload"]["scope"], e["payload"]["cascade_from"]) for e in cascaded
    ] == [
        (root, "study", None),
        (child, "study", root),
        (grandchild, "study", child),
    ]
    await revoke(env, f"/api/shares/{root}/recipients/usr_r1", "usr_sender")
    revoked = await env.events(event_type="AccessRevoked", **{"payload.scope": "bucket"})
    assert [(e["aggregate_id"], e["payload"]["cascade_from"]) for e in revoked] == [
        (child, root),
        (grandchild, child),
    ]
    for user in ("usr_r1", "usr_r2", "usr_r3"):
        seen = await env.client.get("/api/shared-with-me", headers=env.as_(user))
        assert seen.json()["total"] == 0, user
    tab = await env.client.get(
        "/api/shares", params={"study_uid": STUDY_A}, headers=env.as_("usr_owner")
    )
    assert {b["bucket_id"]: b["status"] for b in tab.json()} == {
        root: "revoked",
        child: "revoked",
        grandchild: "revoked",
    }


async def test_access_tab_is_for_sender_owner_and_admins_only(env):
    await env.share()
    for who, expected in (("usr_sender", 1), ("usr_owner", 1), ("usr_r1", 0), ("usr_outsider", 0)):
        tab = await env.client.get(
            "/api/shares", params={"study_uid": STUDY_A}, headers=env.as_(who)
        )
        assert len(tab.json()) == expected, who
    admin = await env.client.get(
        "/api/shares",
        params={"study_uid": STUDY_A},
        headers=env.as_("usr_admin", "department_admin", admin_of=["dep_1"]),
    )
    assert len(admin.json()) == 1 and admin.json()[0]["reason"] == "second opinion"


async def test_access_tab_names_the_sender_and_every_recipient(env):
    recipients = [
        {"kind": "user", "id": "usr_r1"},
        {"kind": "group", "id": "grp_1"},
        {"kind": "department", "id": "dep_pacs"},
        {"kind": "email", "email": "new.doctor@example.org"},
    ]
    await env.share(recipients=recipients)
    tab = await env.client.get(
        "/api/shares", params={"study_uid": STUDY_A}, headers=env.as_("usr_sender")
    )
    [bucket] = tab.json()
    assert bucket["sender_name"] == "Dr Sender"
    assert {r["recipient_id"]: r["name"] for r in bucket["recipients"]} == {
        "usr_r1": "Dr R1",
        "grp_1": "Group practice Zuid",
        "dep_pacs": "PACS Gent",
        "email:new.doctor@example.org": None,
    }


async def test_expiry_ends_access_by_itself_and_is_recorded_once(env):
    until = env.clock.now + timedelta(days=2)
    b = (await env.share(valid_until=until.isoformat()))["bucket_id"]
    await env.share(unlimited=True)
    assert await env.service.expire_due(env.clock.now) == []
    env.clock.now = until + timedelta(seconds=1)
    items = (await env.client.get("/api/shared-with-me", headers=env.as_("usr_r1"))).json()["items"]
    assert [i["unlimited"] for i in items] == [True]  # expired access is gone even before the job
    assert await env.service.expire_due(env.clock.now) == [b]
    assert await env.service.expire_due(env.clock.now) == []
    [expired] = await env.events(event_type="BucketExpired")
    assert expired["aggregate_id"] == b
    view = await env.client.get(f"/api/shares/{b}", headers=env.as_("usr_sender"))
    assert view.json()["status"] == "expired"


async def test_the_access_tab_shows_the_department_all_buckets_and_crosses_only_where_allowed(
    env,
):
    """Issue 16, point 3: the sending department's staff see who can open the study; the
    crosses are offered to the sender, the exam owner and the department's admins only."""
    b = (await env.share())["bucket_id"]

    async def tab(user: str, **claims) -> list[dict]:
        r = await env.client.get(
            "/api/shares", params={"study_uid": STUDY_A}, headers=env.as_(user, **claims)
        )
        assert r.status_code == 200, r.text
        return [(x["bucket_id"], x["may_revoke"]) for x in r.json()]

    assert await tab("usr_sender") == [(b, True)]
    assert await tab("usr_owner") == [(b, True)]
    assert await tab("usr_admin", admin_of=["dep_1"]) == [(b, True)]
    assert await tab("usr_staff2") == [(b, False)], "department staff see, without crosses"
    assert await tab("usr_r1") == [], "a recipient who did not share sees nothing"
    assert await tab("usr_outsider", department_ids=["dep_other"]) == []
    r = await env.client.delete(f"/api/shares/{b}/recipients/usr_r1", headers=env.as_("usr_staff2"))
    assert r.status_code == 403 and r.json()["rule"] == "NotAllowedToRevoke"
    assert await tab("usr_sender") == [(b, True)]
    r = await env.client.delete(f"/api/shares/{b}/recipients/usr_r1", headers=env.as_("usr_sender"))
    assert r.status_code in (200, 204), r.text
