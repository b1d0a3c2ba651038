"""Issue point 5: group practices, members and admins, primary contact first, membership
confirmed every 3 months (due list, confirm endpoint, reminder events). Issue 15, point 1:
whoever a founder or admin names is invited and a member only once they accept."""

from __future__ import annotations

from datetime import timedelta

from studyshare.identity.service_layer.groups import emit_due_reminders

from .conftest import FakeClock


async def setup_group(api):
    desk = await api.desk()
    ids = {
        name: await api.register(desk, username=name, first_name=name.title(), last_name=last)
        for name, last in [
            ("primary", "Zeger"),
            ("admin", "Aerts"),
            ("member", "Maes"),
            ("new", "Nys"),
        ]
    }
    primary = await api.headers("primary", "a-long-password-1")
    created = await api.client.post(
        "/api/groups",
        json={
            "name": "Praktijk De Linde",
            "admin_ids": [ids["admin"]],
            "member_ids": [ids["member"]],
            "email": "praktijk@delinde.be",
        },
        headers=primary,
    )
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    for name in ("admin", "member"):
        await accept(api, group_id, name)
    return group_id, ids, primary


async def accept(api, group_id: str, username: str) -> None:
    invitee = await api.headers(username, "a-long-password-1")
    accepted = await api.client.post(f"/api/groups/{group_id}/accept-membership", headers=invitee)
    assert accepted.status_code == 204, accepted.text


async def test_a_group_shows_the_primary_contact_on_top_and_flags_admins(api):
    group_id, ids, primary = await setup_group(api)
    view = (await api.client.get(f"/api/groups/{group_id}", headers=primary)).json()
    assert view["primary_contact_id"] == ids["primary"]
    assert [(m["user_id"], m["admin"], m["primary_contact"]) for m in view["members"]] == [
        (ids["primary"], True, True),
        (ids["admin"], True, False),
        (ids["member"], False, False),
    ]
    [created] = await api.events("GroupCreated")
    assert created.payload["member_ids"] == [ids["primary"]], "the others were invited"
    invited = await api.events("GroupMemberInvited")
    assert [(e.payload["user_id"], e.payload["admin"]) for e in invited] == [
        (ids["admin"], True),
        (ids["member"], False),
    ]


async def test_admins_add_and_remove_members_others_cannot(api):
    group_id, ids, primary = await setup_group(api)
    member = await api.headers("member", "a-long-password-1")
    admin = await api.headers("admin", "a-long-password-1")
    refused = await api.client.post(
        f"/api/groups/{group_id}/members", json={"user_id": ids["new"]}, headers=member
    )
    assert refused.status_code == 403 and refused.json()["rule"] == "NotAllowed"
    added = await api.client.post(
        f"/api/groups/{group_id}/members", json={"user_id": ids["new"]}, headers=admin
    )
    assert added.status_code == 204
    twice = await api.client.post(
        f"/api/groups/{group_id}/members", json={"user_id": ids["new"]}, headers=admin
    )
    assert twice.status_code == 409 and twice.json()["rule"] == "AlreadyInvited"
    await accept(api, group_id, "new")
    again = await api.client.post(
        f"/api/groups/{group_id}/members", json={"user_id": ids["new"]}, headers=admin
    )
    assert again.status_code == 409 and again.json()["rule"] == "AlreadyMember"
    ghost = await api.client.post(
        f"/api/groups/{group_id}/members", json={"user_id": "usr_nobody"}, headers=admin
    )
    assert ghost.status_code == 404
    removed = await api.client.delete(
        f"/api/groups/{group_id}/members/{ids['member']}", headers=admin
    )
    assert removed.status_code == 204
    primary_out = await api.client.delete(
        f"/api/groups/{group_id}/members/{ids['primary']}", headers=admin
    )
    assert (
        primary_out.status_code == 409 and primary_out.json()["rule"] == "PrimaryContactCannotLeave"
    )
    view = (await api.client.get(f"/api/groups/{group_id}", headers=primary)).json()
    assert [m["user_id"] for m in view["members"]] == [ids["primary"], ids["admin"], ids["new"]]
    assert [e.payload["user_id"] for e in await api.events("GroupMemberRemoved")] == [ids["member"]]
    new = await api.headers("new", "a-long-password-1")
    leave = await api.client.delete(f"/api/groups/{group_id}/members/{ids['new']}", headers=new)
    assert leave.status_code == 204, "a member may leave by themselves"


async def test_membership_is_due_after_three_months_and_confirming_renews_it(api):
    clock = FakeClock()
    api.identity.clock = clock
    group_id, _, _ = await setup_group(api)
    member = await api.headers("member", "a-long-password-1")
    [fresh] = (await api.client.get("/api/users/me/group-confirmations", headers=member)).json()
    assert fresh["group_id"] == group_id and fresh["due"] is False
    assert fresh["members"][0]["primary_contact"] is True

    clock.now += timedelta(days=92)
    [due] = (await api.client.get("/api/users/me/group-confirmations", headers=member)).json()
    assert due["due"] is True
    confirmed = await api.client.post(f"/api/groups/{group_id}/confirm-membership", headers=member)
    assert confirmed.status_code == 200
    [again] = (await api.client.get("/api/users/me/group-confirmations", headers=member)).json()
    assert again["due"] is False
    outsider = await api.headers("new", "a-long-password-1")
    refused = await api.client.post(f"/api/groups/{group_id}/confirm-membership", headers=outsider)
    assert refused.status_code == 404 and refused.json()["rule"] == "NotAMember"


async def test_due_reminders_are_emitted_once_per_member_and_period(api):
    clock = FakeClock()
    api.identity.clock = clock
    group_id, ids, _ = await setup_group(api)
    assert await emit_due_reminders(api.identity, clock.now) == 0
    clock.now += timedelta(days=92)
    member = await api.headers("member", "a-long-password-1")
    await api.client.post(f"/api/groups/{group_id}/confirm-membership", headers=member)
    assert await emit_due_reminders(api.identity, clock.now) == 2, "primary and admin are due"
    assert await emit_due_reminders(api.identity, clock.now) == 0, "idempotent"
    reminders = await api.events("GroupMembershipConfirmationDue")
    assert sorted(e.payload["user_id"] for e in reminders) == sorted([ids["primary"], ids["admin"]])
    assert all(e.aggregate_id == group_id for e in reminders)
    clock.now += timedelta(days=92)
    assert await emit_due_reminders(api.identity, clock.now) == 3, (
        "only the member's renewed period lapsed anew; the others were reminded for theirs "
        "(and, past the grace period, their memberships lapse: 2 GroupMembershipLapsed)"
    )
    assert len(await api.events("GroupMembershipConfirmationDue")) == 3
    assert len(await api.events("GroupMembershipLapsed")) == 2
    latest = (await api.events("GroupMembershipConfirmationDue"))[-1]
    assert latest.payload["user_id"] == ids["member"]


async def test_admins_name_other_admins_and_another_primary_contact(api):
    group_id, ids, primary = await setup_group(api)
    url = f"/api/groups/{group_id}"
    promoted = await api.client.patch(
        f"{url}/members/{ids['member']}", json={"admin": True}, headers=primary
    )
    assert promoted.status_code == 204
    handover = await api.client.put(
        f"{url}/primary-contact", json={"user_id": ids["member"]}, headers=primary
    )
    assert handover.status_code == 204
    view = (await api.client.get(url, headers=primary)).json()
    assert view["primary_contact_id"] == ids["member"]
    assert [(m["user_id"], m["admin"]) for m in view["members"]][:1] == [(ids["member"], True)]
    demote_primary = await api.client.patch(
        f"{url}/members/{ids['member']}", json={"admin": False}, headers=primary
    )
    assert demote_primary.status_code == 409
    assert demote_primary.json()["rule"] == "PrimaryContactIsAdmin"
    demoted = await api.client.patch(
        f"{url}/members/{ids['primary']}", json={"admin": False}, headers=primary
    )
    assert demoted.status_code == 204
    no_longer = await api.client.patch(
        f"{url}/members/{ids['admin']}", json={"admin": False}, headers=primary
    )
    assert no_longer.status_code == 403, "a former admin manages nothing"
    assert [e.payload["admin"] for e in await api.events("GroupAdminChanged")] == [True, False]
    [changed] = await api.events("GroupPrimaryContactChanged")
    assert changed.payload["primary_contact_id"] == ids["member"]


async def test_an_invitee_sees_the_invitation_not_the_group_until_accepting(api):
    desk = await api.desk()
    founder_id = await api.register(desk, username="founder", first_name="Fien", last_name="Claes")
    invitee_id = await api.register(desk, username="invitee", first_name="Ivo", last_name="Smet")
    founder = await api.headers("founder", "a-long-password-1")
    invitee = await api.headers("invitee", "a-long-password-1")
    created = await api.client.post(
        "/api/groups", json={"name": "Praktijk Oost", "member_ids": [invitee_id]}, headers=founder
    )
    group_id = created.json()["id"]
    url = f"/api/groups/{group_id}"
    hidden = await api.client.get(url, headers=invitee)
    assert hidden.status_code == 404 and hidden.json()["rule"] == "GroupNotFound"
    view = (await api.client.get(url, headers=founder)).json()
    assert [m["user_id"] for m in view["members"]] == [founder_id]
    assert [(i["user_id"], i["invited_by"]) for i in view["invited"]] == [(invitee_id, founder_id)]
    assert (await api.client.get(url, headers=desk)).json()["invited"][0]["user_id"] == invitee_id
    [invitation] = (await api.client.get("/api/users/me/group-invitations", headers=invitee)).json()
    assert invitation["group_name"] == "Praktijk Oost"
    assert (invitation["invited_by"], invitation["invited_by_name"]) == (founder_id, "Fien Claes")
    assert not (await api.client.get("/api/users/me/group-confirmations", headers=invitee)).json()
    stranger = await api.client.post(f"{url}/members/{invitee_id}/approve", headers=founder)
    assert stranger.status_code == 403 and stranger.json()["rule"] == "NotAllowed"
    accepted = await api.client.post(f"{url}/accept-membership", headers=invitee)
    assert accepted.status_code == 204
    member_view = (await api.client.get(url, headers=invitee)).json()
    assert {m["user_id"] for m in member_view["members"]} == {founder_id, invitee_id}
    assert member_view["invited"] is None, "invitations are for admins"
    assert not (await api.client.get("/api/users/me/group-invitations", headers=invitee)).json()
    [added] = (await api.events("GroupMemberAdded"))[-1:]
    assert (added.payload["added_by"], added.payload["approved_by"]) == (founder_id, invitee_id)


async def test_a_practice_speaks_its_chosen_language_else_its_primary_contacts(api):
    """Issue 16, point 9: a share's mail language counts a group's (and a department's) own
    language; identity puts it in GroupCreated / DepartmentCreated."""
    desk = await api.desk()
    await api.register(desk, username="dokter.fr", language="fr")
    founder = await api.headers("dokter.fr", "a-long-password-1")
    default = await api.client.post("/api/groups", json={"name": "Cabinet"}, headers=founder)
    chosen = await api.client.post(
        "/api/groups", json={"name": "Praktijk", "language": "nl"}, headers=founder
    )
    assert default.status_code == chosen.status_code == 201, default.text
    languages = {e.aggregate_id: e.payload["language"] for e in await api.events("GroupCreated")}
    assert languages == {default.json()["id"]: "fr", chosen.json()["id"]: "nl"}
    bad = await api.client.post(
        "/api/groups", json={"name": "X", "language": "xx"}, headers=founder
    )
    assert bad.status_code == 422

    dep = await api.client.post(
        "/api/departments", json={"name": "Radiologie Eupen", "language": "de"}, headers=desk
    )
    assert dep.status_code == 201, dep.text
    [created] = await api.events("DepartmentCreated")
    assert created.payload["language"] == "de"


async def test_login_says_which_confirmations_are_due_and_unconfirmed_memberships_lapse(make_api):
    """Issue 16, point 5: asked at login; past the deployment's grace period (here 10 days) an
    unconfirmed membership lapses (once), after the reminder at the due date; confirming
    restores it."""
    api = await make_api(group_confirmation_grace_days=10)
    clock = FakeClock()
    api.identity.clock = clock
    group_id, ids, _ = await setup_group(api)
    fresh = await api.login("member", "a-long-password-1")
    assert fresh.json()["group_confirmations_due"] == []
    clock.now += timedelta(days=92)
    due = await api.login("member", "a-long-password-1")
    assert due.json()["group_confirmations_due"] == [group_id]
    assert await emit_due_reminders(api.identity, clock.now) == 3, "reminders, no lapse yet"
    assert await api.events("GroupMembershipLapsed") == []
    member = {"Authorization": f"Bearer {due.json()['access_token']}"}
    confirmed = await api.client.post(f"/api/groups/{group_id}/confirm-membership", headers=member)
    assert confirmed.status_code == 200
    clock.now += timedelta(days=10)
    assert await emit_due_reminders(api.identity, clock.now) == 2, "primary and admin lapse"
    assert await emit_due_reminders(api.identity, clock.now) == 0, "once"
    lapsed = await api.events("GroupMembershipLapsed")
    assert sorted(e.payload["user_id"] for e in lapsed) == sorted([ids["primary"], ids["admin"]])
    admin = await api.headers("admin", "a-long-password-1")
    mine = (await api.client.get("/api/users/me/group-confirmations", headers=admin)).json()
    assert [(g["group_id"], g["due"], g["lapsed"]) for g in mine] == [(group_id, True, True)]
    await api.client.post(f"/api/groups/{group_id}/confirm-membership", headers=admin)
    mine = (await api.client.get("/api/users/me/group-confirmations", headers=admin)).json()
    assert [(g["due"], g["lapsed"]) for g in mine] == [(False, False)]
    assert (await api.login("admin", "a-long-password-1")).json()["group_confirmations_due"] == []


async def test_a_wrong_composition_is_reported_to_the_admins_or_else_the_service_desk(api):
    """Issue 16, point 5 (manual L13): a member's report names the admins to tell; the only
    admin's own report goes to the service desk. Only members report; a remark is needed."""
    group_id, ids, primary = await setup_group(api)
    url = f"/api/groups/{group_id}/report-composition"
    member = await api.headers("member", "a-long-password-1")
    told = await api.client.post(url, json={"remark": "Dr Nys joined us"}, headers=member)
    assert told.status_code == 202, told.text
    assert told.json() == {"group_id": group_id, "told": "group_admins"}
    (event,) = await api.events("GroupCompositionReported")
    assert sorted(event.payload["admin_ids"]) == sorted([ids["primary"], ids["admin"]])
    assert event.payload["reported_by"] == ids["member"]
    empty = await api.client.post(url, json={"remark": "  "}, headers=member)
    assert (empty.status_code, empty.json()["rule"]) == (422, "CompositionReportEmpty")
    outsider = await api.headers("new", "a-long-password-1")
    refused = await api.client.post(url, json={"remark": "x"}, headers=outsider)
    assert (refused.status_code, refused.json()["rule"]) == (404, "NotAMember")
    assert len(await api.events("GroupCompositionReported")) == 1, "refusals change nothing"
    # the primary contact demotes the other admin: then they are the only admin
    await api.client.patch(
        f"/api/groups/{group_id}/members/{ids['admin']}", json={"admin": False}, headers=primary
    )
    desk = await api.client.post(url, json={"remark": "Maes left"}, headers=primary)
    assert desk.json()["told"] == "service_desk"
    assert (await api.events("GroupCompositionReported"))[-1].payload["admin_ids"] == []
