"""Issue point 9: every change and every login success and failure is an event (with the
actor), and the read models are a pure function of the events: dropped and rebuilt, they are
equal to the live ones."""

from __future__ import annotations

import subprocess
import sys

from studyshare.identity.service_layer.rebuild import READ_MODELS, rebuild_read_models

from .test_recipients import populate


async def snapshot(db) -> dict[str, list]:
    return {name: await db[name].find({}).sort("_id", 1).to_list(None) for name in READ_MODELS}


async def test_every_change_and_login_is_an_event_with_its_actor(api):
    ids = await populate(api)
    desk = await api.desk()
    me = await api.headers("jan.peeters", "a-long-password-1")
    await api.client.patch("/api/users/me", json={"language": "de"}, headers=me)
    await api.client.post(
        "/api/users/me/password",
        json={"current_password": "a-long-password-1", "new_password": "another-password-2"},
        headers=me,
    )
    wrong_current = await api.client.post(
        "/api/users/me/password",
        json={"current_password": "a-long-password-1", "new_password": "third-password-33"},
        headers=me,
    )
    assert wrong_current.status_code == 401
    assert (await api.login("jan.peeters", "a-long-password-1")).status_code == 401
    assert (await api.login("jan.peeters", "another-password-2")).status_code == 200
    await api.client.put(f"/api/users/{ids['an']}/roles", json={"roles": ["auditor"]}, headers=desk)
    await api.client.post(
        f"/api/groups/{ids['group']}/members", json={"user_id": ids["an"]}, headers=desk
    )
    types = {e.event_type for e in await api.events()}
    assert {
        "UserRegistered",
        "UserProfileChanged",
        "PasswordChanged",
        "UserRolesChanged",
        "LoginSucceeded",
        "LoginFailed",
        "GroupCreated",
        "GroupMemberAdded",
        "GroupMembershipConfirmed",
        "DepartmentCreated",
        "DepartmentPolicySet",
    } <= types
    [roles] = await api.events("UserRolesChanged")
    desk_id = (await api.client.get("/api/users/me", headers=desk)).json()["user_id"]
    assert roles.actor.id == desk_id and roles.actor.role == "service_desk"
    assert roles.payload["roles"] == ["auditor"]
    [failed] = await api.events("LoginFailed")
    assert failed.payload["user_id"] == ids["jan"] and failed.actor.kind == "anonymous"


async def test_read_models_rebuilt_from_the_events_equal_the_live_ones(api):
    ids = await populate(api)
    desk = await api.desk()
    me = await api.headers("jan.peeters", "a-long-password-1")
    await api.client.patch("/api/users/me", json={"email_public": False}, headers=me)
    await api.client.post(f"/api/users/{ids['an']}/deactivate", headers=desk)
    await api.client.post(
        f"/api/groups/{ids['group']}/members", json={"user_id": ids["jans"]}, headers=desk
    )
    await api.client.post(
        f"/api/departments/{ids['rad']}/admins", json={"user_id": ids["jan"]}, headers=desk
    )
    promoted = await api.client.patch(
        f"/api/groups/{ids['group']}/members/{ids['jans']}", json={"admin": True}, headers=desk
    )
    assert promoted.status_code == 204
    live = await snapshot(api.identity.db)
    assert live["recipients"] and live["memberships"]
    count = await rebuild_read_models(api.identity.db)
    assert count == len(await api.events())
    assert await snapshot(api.identity.db) == live


async def test_the_cli_rebuilds_the_read_models(api, real_infra):
    await populate(api)
    live = await snapshot(api.identity.db)
    await api.identity.db.drop_collection("recipients")
    result = subprocess.run(
        [sys.executable, "-m", "studyshare.identity", "rebuild-read-models"],
        env={
            "PATH": "/usr/bin:/bin",
            "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
            "STUDYSHARE_DATABASE": api.identity.db.name,
            "STUDYSHARE_ENVIRONMENT": "test",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "read models rebuilt" in result.stdout
    assert await snapshot(api.identity.db) == live
