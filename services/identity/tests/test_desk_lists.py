"""What the service desk's page lists: accounts found by username or e-mail (any status),
accounts locked now, and every open group invitation; only for the service desk."""

from __future__ import annotations

from datetime import UTC, datetime

from .conftest import FakeClock


async def test_the_service_desk_finds_accounts_by_username_or_e_mail_whatever_their_status(api):
    desk = await api.desk()
    active = await api.register(desk, username="dr.vermeulen", email="an@example.org")
    pending = await api.client.post(
        "/api/users/register",
        json={
            "username": "dr.verhoeven",
            "password": "a-long-password-1",
            "first_name": "Piet",
            "last_name": "Verhoeven",
            "email": "piet@example.org",
        },
    )
    assert pending.status_code == 201, pending.text
    found = await api.client.get("/api/users", params={"q": "DR.VER"}, headers=desk)
    assert found.status_code == 200, found.text
    items = found.json()["items"]
    assert [(u["username"], u["status"]) for u in items] == [
        ("dr.verhoeven", "pending"),
        ("dr.vermeulen", "active"),
    ]
    by_mail = await api.client.get("/api/users", params={"q": "An@Example.org"}, headers=desk)
    assert [u["user_id"] for u in by_mail.json()["items"]] == [active]
    me = await api.headers("dr.vermeulen", "a-long-password-1")
    refused = await api.client.get("/api/users", params={"q": "dr"}, headers=me)
    assert refused.status_code == 403 and refused.json()["rule"] == "NotAllowed"


async def test_locked_accounts_are_listed_until_the_desk_unlocks_them(api):
    api.identity.clock = FakeClock(datetime(2026, 5, 1, 8, 0, tzinfo=UTC))
    desk = await api.desk()
    user_id = await api.register(desk, username="dr.locked")
    await api.register(desk, username="dr.fine")
    for _ in range(5):
        await api.login("dr.locked", "wrong-password")
    await api.login("dr.fine", "wrong-password")  # one failure: not locked
    await api.login("nobody.at.all", "wrong-password")  # no account: never listed
    locked = await api.client.get("/api/users/locked", headers=desk)
    assert locked.status_code == 200, locked.text
    [entry] = locked.json()
    assert entry["user_id"] == user_id and entry["failures"] == 5
    assert entry["locked_until"].startswith("2026-05-01T08:00:30")
    assert (await api.client.post(f"/api/users/{user_id}/unlock", headers=desk)).status_code == 204
    assert (await api.client.get("/api/users/locked", headers=desk)).json() == []
    me = await api.headers("dr.fine", "a-long-password-1")
    assert (await api.client.get("/api/users/locked", headers=me)).status_code == 403


async def test_the_service_desk_sees_every_open_invitation_and_approves_one(api):
    desk = await api.desk()
    founder = await api.register(desk, username="dr.founder", first_name="Fien", last_name="Maes")
    invitee = await api.register(desk, username="dr.invitee", first_name="Ivo", last_name="Claes")
    me = await api.headers("dr.founder", "a-long-password-1")
    created = await api.client.post(
        "/api/groups", json={"name": "Praktijk Noord", "member_ids": [invitee]}, headers=me
    )
    group_id = created.json()["group_id"]
    listed = await api.client.get("/api/groups/invitations", headers=desk)
    assert listed.status_code == 200, listed.text
    [open_one] = listed.json()
    assert open_one["group_id"] == group_id and open_one["group_name"] == "Praktijk Noord"
    assert (open_one["user_id"], open_one["user_name"]) == (invitee, "Ivo Claes")
    assert (open_one["invited_by"], open_one["invited_by_name"]) == (founder, "Fien Maes")
    assert (await api.client.get("/api/groups/invitations", headers=me)).status_code == 403
    approved = await api.client.post(
        f"/api/groups/{group_id}/members/{invitee}/approve", headers=desk
    )
    assert approved.status_code == 204
    assert (await api.client.get("/api/groups/invitations", headers=desk)).json() == []
