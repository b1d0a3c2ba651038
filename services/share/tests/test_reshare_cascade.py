"""Issue 15, point 3: a re-share lasts only while its sender holds the parent bucket. Revoking a
department or group recipient ends the re-shares of the senders who held the bucket through
it; a sender leaving the department or group ends them too (the worker's reaction)."""

from __future__ import annotations

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import (
    DepartmentCreated,
    GroupMemberRemoved,
    UserRolesChanged,
)
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import ProjectionContext
from studyshare.share.service_layer.reactions import MembershipCascade

from .conftest import STUDY_A, user

DEP = {"kind": "department", "id": "dep_rx"}
GROUP = {"kind": "group", "id": "grp_1"}


async def _world(env) -> None:
    await env.seed(
        DepartmentCreated(department_id="dep_rx", name="Radiology Gent", created_by="t"),
        user("usr_d1", "en", department_ids=("dep_rx",)),
    )


async def _root_and_child(env, recipients: list[dict], sender: str, **claims) -> tuple[str, str]:
    root = await env.share(recipients=recipients, allow_further_sharing=True, study_uids=[STUDY_A])
    response = await env.client.post(
        "/api/shares",
        json={
            "study_uids": [STUDY_A],
            "recipients": [{"kind": "user", "id": "usr_r2"}],
            "access_level": "images_report_read",
            "reason": "second opinion",
            "patient_agreed": True,
            "parent_bucket_id": root["bucket_id"],
        },
        headers=env.as_(sender, **claims),
    )
    assert response.status_code == 201, response.text
    return root["bucket_id"], response.json()["bucket_id"]


async def _cascaded(env, bucket_id: str) -> list[tuple[str, str | None]]:
    return [
        (e["payload"]["scope"], e["payload"]["cascade_from"])
        for e in await env.events(event_type="AccessRevoked", aggregate_id=bucket_id)
    ]


async def test_revoking_a_department_recipient_ends_its_members_reshares(env):
    await _world(env)
    root, child = await _root_and_child(env, [DEP], "usr_d1", department_ids=["dep_rx"])
    r = await env.client.delete(
        f"/api/shares/{root}/recipients/dep_rx", headers=env.as_("usr_sender")
    )
    assert r.status_code == 200, r.text
    assert await _cascaded(env, child) == [("bucket", root)]


async def test_a_sender_still_holding_the_bucket_another_way_keeps_the_reshare(env):
    await _world(env)
    both = [DEP, {"kind": "user", "id": "usr_d1"}]
    root, child = await _root_and_child(env, both, "usr_d1", department_ids=["dep_rx"])
    r = await env.client.delete(
        f"/api/shares/{root}/recipients/dep_rx", headers=env.as_("usr_sender")
    )
    assert r.status_code == 200, r.text
    assert await _cascaded(env, child) == []


async def _react(env, event, aggregate_id: str) -> None:
    envelope = envelope_for(event, aggregate_id=aggregate_id, aggregate_version=99, actor=Actor())
    await env.seed(event)
    reaction = MembershipCascade(env.service.settings)
    await reaction.apply([envelope], ProjectionContext(env.db, reaction.name, 0))
    await reaction.apply([envelope], ProjectionContext(env.db, reaction.name, 0))  # redelivered


async def test_a_member_leaving_the_group_ends_their_reshares(env):
    root, child = await _root_and_child(env, [GROUP], "usr_g2")
    removed = GroupMemberRemoved(group_id="grp_1", user_id="usr_g2", removed_by="usr_g1")
    await _react(env, removed, "grp_1")
    assert await _cascaded(env, child) == [("bucket", root)]
    [event] = await env.events(event_type="AccessRevoked", aggregate_id=child)
    assert event["actor"]["id"] == "system:share-cascade"
    assert event["payload"]["revoked_by"] == "usr_g1"


async def test_a_user_leaving_the_department_ends_their_reshares(env):
    await _world(env)
    root, child = await _root_and_child(env, [DEP], "usr_d1", department_ids=["dep_rx"])
    left = UserRolesChanged(
        user_id="usr_d1", roles=("physician",), department_ids=(), admin_of=(), changed_by="t"
    )
    await _react(env, left, "usr_d1")
    assert await _cascaded(env, child) == [("bucket", root)]


async def test_a_membership_change_keeping_the_route_ends_nothing(env):
    await _world(env)
    _root, child = await _root_and_child(env, [DEP], "usr_d1", department_ids=["dep_rx"])
    kept = UserRolesChanged(
        user_id="usr_d1",
        roles=("physician", "department_staff"),
        department_ids=("dep_rx",),
        admin_of=(),
        changed_by="t",
    )
    await _react(env, kept, "usr_d1")
    assert await _cascaded(env, child) == []
