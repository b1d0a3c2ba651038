"""Issue 15, point 1, the rule itself (pure, no infrastructure): naming someone in a group
invites them; only their acceptance or the service desk's approval makes them a member."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from studyshare.identity.domain.exceptions import (
    AlreadyInvited,
    AlreadyMember,
    MembershipNotAccepted,
    NotAllowed,
    NotAMember,
    NotInvited,
)
from studyshare.identity.domain.group import Group

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def folded(events: list, group: Group | None = None) -> Group:
    group = group or Group("grp_1")
    for event in events:
        group.apply(event)
    return group


def founded_by(founder: str, *named: str, admins: tuple[str, ...] = ()) -> Group:
    return folded(
        Group.create(
            "grp_1",
            name="Praktijk",
            primary_contact_id=founder,
            admin_ids=admins,
            member_ids=named,
            email=None,
            created_by=founder,
            service_desk=False,
            now=NOW,
        )
    )


def types(events: list) -> list[str]:
    return [e.event_type for e in events]


def test_a_founder_is_the_only_member_everyone_named_is_invited():
    events = Group.create(
        "grp_1",
        name="Praktijk",
        primary_contact_id="usr_f",
        admin_ids=("usr_a",),
        member_ids=("usr_m",),
        email=None,
        created_by="usr_f",
        service_desk=False,
        now=NOW,
    )
    created = events[0]
    assert (created.member_ids, created.admin_ids) == (("usr_f",), ("usr_f",))
    assert types(events) == [
        "GroupCreated",
        "GroupMemberAdded",
        "GroupMembershipConfirmed",
        "GroupMemberInvited",
        "GroupMemberInvited",
    ]
    assert [(e.user_id, e.admin) for e in events[3:]] == [("usr_a", True), ("usr_m", False)]
    group = folded(events)
    assert set(group.members) == {"usr_f"} and set(group.invitations) == {"usr_a", "usr_m"}


def test_a_founder_cannot_make_someone_else_primary_contact():
    with pytest.raises(NotAllowed):
        Group.create(
            "grp_1",
            name="Praktijk",
            primary_contact_id="usr_x",
            admin_ids=(),
            member_ids=(),
            email=None,
            created_by="usr_f",
            service_desk=False,
            now=NOW,
        )


def test_whom_the_service_desk_names_is_a_member_at_once():
    events = Group.create(
        "grp_1",
        name="Praktijk",
        primary_contact_id="usr_p",
        admin_ids=(),
        member_ids=("usr_m",),
        email=None,
        created_by="usr_desk",
        service_desk=True,
        now=NOW,
    )
    assert "GroupMemberInvited" not in types(events)
    added = [e for e in events if e.event_type == "GroupMemberAdded"]
    assert [(e.user_id, e.approved_by) for e in added] == [
        ("usr_p", "usr_desk"),
        ("usr_m", "usr_desk"),
    ]


def test_accepting_makes_a_member_with_the_invited_role():
    group = founded_by("usr_f", admins=("usr_a",))
    events = group.accept_invitation("usr_a", NOW)
    assert types(events) == ["GroupMemberAdded", "GroupMembershipConfirmed"]
    assert (events[0].admin, events[0].added_by, events[0].approved_by) == (True, "usr_f", "usr_a")
    folded(events, group)
    assert group.is_admin("usr_a") and not group.invitations
    with pytest.raises(AlreadyMember):
        group.accept_invitation("usr_a", NOW)


def test_an_admin_invites_the_service_desk_adds():
    group = founded_by("usr_f")
    assert types(
        group.add_member("usr_n", admin=False, by="usr_f", service_desk=False, now=NOW)
    ) == ["GroupMemberInvited"]
    folded(group.add_member("usr_n", admin=False, by="usr_f", service_desk=False, now=NOW), group)
    with pytest.raises(AlreadyInvited):
        group.add_member("usr_n", admin=False, by="usr_f", service_desk=False, now=NOW)
    by_desk = group.add_member("usr_n", admin=False, by="usr_desk", service_desk=True, now=NOW)
    assert types(by_desk) == ["GroupMemberAdded", "GroupMembershipConfirmed"]
    assert by_desk[0].approved_by == "usr_desk"


def test_only_the_invitee_or_the_service_desk_accepts():
    group = founded_by("usr_f", "usr_m")
    with pytest.raises(NotAllowed):
        group.approve_invitation("usr_m", by="usr_f", service_desk=False, now=NOW)
    approved = group.approve_invitation("usr_m", by="usr_desk", service_desk=True, now=NOW)
    assert (approved[0].user_id, approved[0].approved_by) == ("usr_m", "usr_desk")
    with pytest.raises(NotInvited):
        group.accept_invitation("usr_stranger", NOW)


def test_an_invitee_is_nothing_a_member_is_until_accepted():
    group = founded_by("usr_f", "usr_m")
    with pytest.raises(MembershipNotAccepted):
        group.set_admin("usr_m", True, by="usr_f", service_desk=False)
    with pytest.raises(MembershipNotAccepted):
        group.set_primary_contact("usr_m", by="usr_f", service_desk=False)
    with pytest.raises(NotAMember):
        group.confirm_membership("usr_m", NOW)
    with pytest.raises(NotAllowed):
        group.add_member("usr_x", admin=False, by="usr_m", service_desk=False, now=NOW)
    assert group.due_reminders(NOW.replace(year=2030)) and all(
        r.user_id == "usr_f" for r in group.due_reminders(NOW.replace(year=2030))
    )


def test_an_invitation_is_declined_by_the_invitee_or_withdrawn_by_an_admin():
    group = founded_by("usr_f", "usr_m", "usr_n")
    assert types(group.remove_member("usr_m", by="usr_m", service_desk=False)) == [
        "GroupInvitationDeclined"
    ]
    assert types(group.decline_invitation("usr_m")) == ["GroupInvitationDeclined"]
    withdrawn = group.remove_member("usr_n", by="usr_f", service_desk=False)
    assert types(withdrawn) == ["GroupInvitationWithdrawn"] and withdrawn[0].withdrawn_by == "usr_f"
    with pytest.raises(NotAllowed):
        group.remove_member("usr_n", by="usr_m", service_desk=False)
    folded(withdrawn + group.decline_invitation("usr_m"), group)
    assert not group.invitations
    with pytest.raises(NotInvited):
        group.accept_invitation("usr_n", NOW)
