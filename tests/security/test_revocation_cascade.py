"""Issue 15, point 3: the revocation cascade.

Revoking a department or group recipient, or a user leaving that department or group, ends
every re-share made from that grant; at decision time a re-share is valid only while its
sender still holds the parent grant (as themselves, or through a department or group they are
still in).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from studyshare.devstack.platform import LocalPlatform

from ..storykit import (
    Gateway,
    Person,
    ok,
    problem,
    refused_now,
    unique,
    wait_for,
)

# A revocation (share) or a member leaving (identity) answers once every study-store API
# process decides on it (point 13): the re-share's next request is refused.
BIRTH_DATE = "19750102"


@pytest.fixture(scope="module")
def world(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    """A sending department and its physician; the people re-sharing are made per test."""
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    sending = api.radiology_department(desk, unique("Cascade sender "))
    sender = api.register(desk, "Sam", roles=["physician"], department_ids=[sending])
    return SimpleNamespace(desk=desk, sending=sending, sender=sender)


def _user(person: Person) -> dict[str, str]:
    return {"kind": "user", "id": person.user_id}


def _opens(api: Gateway, who: Person, uid: str) -> dict:
    return ok(wait_for(lambda: (r := api.study(who, uid)).status_code == 200 and r, f"{uid} opens"))


def _reshare(api: Gateway, by: Person, uid: str, parent_id: str, to: Person) -> str:
    child = api.shared(
        by,
        study_uids=[uid],
        recipients=[_user(to)],
        access_level="images_report_read",
        parent_bucket_id=parent_id,
        two_factor=False,
        send_mail=False,
    )
    assert _opens(api, to, uid)["access"]["bucket_id"] == child
    return child


def _share_further(api: Gateway, world: SimpleNamespace, uid: str, recipient: dict) -> str:
    return api.shared(
        world.sender,
        study_uids=[uid],
        recipients=[recipient],
        access_level="images_report_read",
        allow_further_sharing=True,
        two_factor=False,
        send_mail=False,
    )


def _group(api: Gateway, world: SimpleNamespace, *members: Person) -> str:
    return ok(
        api.client.post(
            "/api/groups",
            json={
                "name": unique("Cascade practice "),
                "primary_contact_id": members[0].user_id,
                "member_ids": [m.user_id for m in members],
            },
            headers=world.desk,
        ),
        201,
    )["group_id"]


def _child_revoked(api: Gateway, by: Person, child_id: str) -> None:
    """The share service ended the re-share too (its own bucket, not only the decision)."""

    def revoked() -> bool:
        r = api.client.get(f"/api/shares/{child_id}", headers=by.headers)
        return r.status_code == 200 and r.json()["status"] == "revoked"

    wait_for(revoked, f"re-share {child_id} revoked by the cascade")


def test_revoking_a_department_recipient_ends_the_reshares_made_from_that_grant(
    api: Gateway, world: SimpleNamespace
):
    receiving = api.radiology_department(world.desk, unique("Cascade receiver "))
    member = api.register(world.desk, "Dora", roles=["physician"], department_ids=[receiving])
    third = api.register(world.desk, "Tom", roles=["physician"])
    uid = api.upload(world.sender, "CT cascade dep", "Cascade^Dep", BIRTH_DATE).study_uid
    parent_id = _share_further(api, world, uid, {"kind": "department", "id": receiving})
    _opens(api, member, uid)
    child_id = _reshare(api, member, uid, parent_id, third)

    ok(
        api.client.delete(
            f"/api/shares/{parent_id}/recipients/{receiving}", headers=world.sender.headers
        )
    )
    refused = refused_now(lambda: api.study(third, uid), "re-share of a revoked department")
    problem(refused, 403, "GrantRevoked")
    _child_revoked(api, member, child_id)


def test_revoking_a_group_recipient_ends_the_reshares_made_from_that_grant(
    api: Gateway, world: SimpleNamespace
):
    member = api.register(world.desk, "Gina", roles=["physician"])
    other = api.register(world.desk, "Gert", roles=["physician"])
    third = api.register(world.desk, "Tess", roles=["physician"])
    group_id = _group(api, world, member, other)
    uid = api.upload(world.sender, "CT cascade grp", "Cascade^Grp", BIRTH_DATE).study_uid
    parent_id = _share_further(api, world, uid, {"kind": "group", "id": group_id})
    _opens(api, member, uid)
    child_id = _reshare(api, member, uid, parent_id, third)

    ok(
        api.client.delete(
            f"/api/shares/{parent_id}/recipients/{group_id}", headers=world.sender.headers
        )
    )
    refused = refused_now(lambda: api.study(third, uid), "re-share of a revoked group")
    problem(refused, 403, "GrantRevoked")
    _child_revoked(api, member, child_id)


def test_a_user_who_left_the_department_ends_the_reshares_made_from_its_grant(
    api: Gateway, world: SimpleNamespace
):
    receiving = api.radiology_department(world.desk, unique("Cascade leaver "))
    member = api.register(world.desk, "Lea", roles=["physician"], department_ids=[receiving])
    stays = api.register(world.desk, "Stan", roles=["physician"], department_ids=[receiving])
    third = api.register(world.desk, "Theo", roles=["physician"])
    uid = api.upload(world.sender, "CT cascade left dep", "Cascade^Left", BIRTH_DATE).study_uid
    parent_id = _share_further(api, world, uid, {"kind": "department", "id": receiving})
    _opens(api, member, uid)
    child_id = _reshare(api, member, uid, parent_id, third)

    ok(
        api.client.delete(
            f"/api/departments/{receiving}/members/{member.user_id}", headers=world.desk
        ),
        204,
    )
    refused = refused_now(lambda: api.study(third, uid), "re-share of a department left")
    problem(refused, 403, "GrantRevoked")
    # a token carries its departments: the member's earlier one ended with the change
    problem(api.client.get("/api/shares/sent", headers=member.headers), 401, "SessionEnded")
    member.headers = api.login(member.username, member.password)
    _child_revoked(api, member, child_id)
    # The department's grant itself still holds for those who stayed.
    assert ok(api.study(stays, uid))["access"]["bucket_id"] == parent_id


def test_a_user_who_left_the_group_ends_the_reshares_made_from_its_grant(
    api: Gateway, world: SimpleNamespace
):
    member = api.register(world.desk, "Lis", roles=["physician"])
    stays = api.register(world.desk, "Stef", roles=["physician"])
    third = api.register(world.desk, "Tina", roles=["physician"])
    group_id = _group(api, world, stays, member)
    uid = api.upload(world.sender, "CT cascade left grp", "Cascade^Grpleft", BIRTH_DATE).study_uid
    parent_id = _share_further(api, world, uid, {"kind": "group", "id": group_id})
    _opens(api, member, uid)
    child_id = _reshare(api, member, uid, parent_id, third)

    ok(
        api.client.delete(f"/api/groups/{group_id}/members/{member.user_id}", headers=world.desk),
        204,
    )
    refused = refused_now(lambda: api.study(third, uid), "re-share of a group left")
    problem(refused, 403, "GrantRevoked")
    _child_revoked(api, member, child_id)
    assert ok(api.study(stays, uid))["access"]["bucket_id"] == parent_id


def test_a_reshare_holds_while_its_sender_still_holds_the_parent_another_way(
    api: Gateway, world: SimpleNamespace
):
    """The sender is a recipient in their own name and through the department: revoking the
    department leaves their grant, so their re-share holds."""
    receiving = api.radiology_department(world.desk, unique("Cascade both "))
    member = api.register(world.desk, "Bo", roles=["physician"], department_ids=[receiving])
    third = api.register(world.desk, "Tijl", roles=["physician"])
    uid = api.upload(world.sender, "CT cascade both", "Cascade^Both", BIRTH_DATE).study_uid
    parent_id = api.shared(
        world.sender,
        study_uids=[uid],
        recipients=[{"kind": "department", "id": receiving}, _user(member)],
        access_level="images_report_read",
        allow_further_sharing=True,
        two_factor=False,
        send_mail=False,
    )
    _opens(api, member, uid)
    child_id = _reshare(api, member, uid, parent_id, third)

    ok(
        api.client.delete(
            f"/api/shares/{parent_id}/recipients/{receiving}", headers=world.sender.headers
        )
    )
    # The answer came once every model had the revocation: it did not cascade.
    assert ok(api.study(third, uid))["access"]["bucket_id"] == child_id
    child = ok(api.client.get(f"/api/shares/{child_id}", headers=member.headers))
    assert child["status"] == "active", child
