"""The Group aggregate: a group practice, its members, admins and primary contact, the
invitations not yet accepted, and the 3-monthly confirmation of its composition by every
member. Pure: no I/O.

Membership is consent: naming someone in a group invites them (`GroupMemberInvited`); they are
a member, and colleagues of the other members, only once they accept or the service desk
approves (`GroupMemberAdded`). The service desk's own additions are its approval."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from studyshare.contracts.events.identity import (
    GroupAdminChanged,
    GroupCompositionReported,
    GroupCreated,
    GroupInvitationDeclined,
    GroupInvitationWithdrawn,
    GroupMemberAdded,
    GroupMemberInvited,
    GroupMemberRemoved,
    GroupMembershipConfirmationDue,
    GroupMembershipConfirmed,
    GroupMembershipLapsed,
    GroupPrimaryContactChanged,
)
from studyshare.identity.domain.exceptions import (
    AlreadyInvited,
    AlreadyMember,
    CompositionReportEmpty,
    GroupNotFound,
    MembershipNotAccepted,
    NotAllowed,
    NotAMember,
    NotInvited,
    PrimaryContactCannotLeave,
    PrimaryContactIsAdmin,
)
from studyshare.plumbing.domain import Aggregate, applies

CONFIRMATION_PERIOD = timedelta(days=91)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Membership:
    user_id: str
    admin: bool
    confirmed_until: datetime
    reminded_for: datetime | None = None
    lapsed_for: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.confirmed_until <= now

    def lapsed(self, now: datetime, grace: timedelta) -> bool:
        """Unconfirmed past the grace period: the membership gives no access until confirmed."""
        return self.confirmed_until + grace <= now


@dataclass
class Invitation:
    user_id: str
    admin: bool
    invited_by: str


def joined(
    group_id: str,
    user_id: str,
    *,
    admin: bool,
    added_by: str,
    approved_by: str,
    confirmed_until: datetime,
) -> list:
    """The events of a membership that starts now, confirmed for a first period."""
    return [
        GroupMemberAdded(
            group_id=group_id,
            user_id=user_id,
            admin=admin,
            added_by=added_by,
            approved_by=approved_by,
        ),
        GroupMembershipConfirmed(
            group_id=group_id, user_id=user_id, confirmed_until=confirmed_until
        ),
    ]


class Group(Aggregate):
    aggregate_type = "Group"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.primary_contact_id = ""
        self.members: dict[str, Membership] = {}
        self.invitations: dict[str, Invitation] = {}
        self.period = CONFIRMATION_PERIOD

    # folds (times come from the event, so a rebuild is exact)
    @applies
    def when_group_created(self, e: GroupCreated) -> None:
        self.name = e.name
        self.primary_contact_id = e.primary_contact_id

    @applies
    def when_group_member_invited(self, e: GroupMemberInvited) -> None:
        self.invitations[e.user_id] = Invitation(e.user_id, e.admin, e.invited_by)

    @applies
    def when_group_invitation_declined(self, e: GroupInvitationDeclined) -> None:
        self.invitations.pop(e.user_id, None)

    @applies
    def when_group_invitation_withdrawn(self, e: GroupInvitationWithdrawn) -> None:
        self.invitations.pop(e.user_id, None)

    @applies
    def when_group_member_added(self, e: GroupMemberAdded) -> None:
        self.invitations.pop(e.user_id, None)
        self.members[e.user_id] = Membership(e.user_id, e.admin, EPOCH)

    @applies
    def when_group_member_removed(self, e: GroupMemberRemoved) -> None:
        self.members.pop(e.user_id, None)

    @applies
    def when_group_admin_changed(self, e: GroupAdminChanged) -> None:
        if e.user_id in self.members:
            self.members[e.user_id].admin = e.admin

    @applies
    def when_group_primary_contact_changed(self, e: GroupPrimaryContactChanged) -> None:
        self.primary_contact_id = e.primary_contact_id

    @applies
    def when_group_membership_confirmed(self, e: GroupMembershipConfirmed) -> None:
        if e.user_id in self.members:
            self.members[e.user_id].confirmed_until = e.confirmed_until

    @applies
    def when_group_membership_confirmation_due(self, e: GroupMembershipConfirmationDue) -> None:
        if e.user_id in self.members:
            self.members[e.user_id].reminded_for = e.due_since

    @applies
    def when_group_membership_lapsed(self, e: GroupMembershipLapsed) -> None:
        if e.user_id in self.members:
            self.members[e.user_id].lapsed_for = e.due_since

    @applies
    def when_group_composition_reported(self, e: GroupCompositionReported) -> None:
        pass

    # queries
    def is_admin(self, user_id: str) -> bool:
        m = self.members.get(user_id)
        return bool(m and m.admin)

    def _must_exist(self) -> None:
        if not self.exists:
            raise GroupNotFound(f"group {self.id} does not exist")

    def _must_manage(self, actor: str, service_desk: bool) -> None:
        if not (service_desk or self.is_admin(actor)):
            raise NotAllowed("only a group admin or the service desk changes a group")

    def _must_be_member(self, user_id: str) -> None:
        if user_id in self.invitations:
            raise MembershipNotAccepted(
                f"user {user_id} has not accepted the invitation to group {self.id} yet"
            )
        if user_id not in self.members:
            raise NotAMember(f"user {user_id} is not a member of group {self.id}")

    def _invitation(self, user_id: str) -> Invitation:
        if user_id in self.members:
            raise AlreadyMember(f"user {user_id} is already a member of group {self.id}")
        invitation = self.invitations.get(user_id)
        if invitation is None:
            raise NotInvited(f"user {user_id} has no open invitation to group {self.id}")
        return invitation

    def _joined(
        self, user_id: str, *, admin: bool, added_by: str, approved_by: str, now: datetime
    ) -> list:
        return joined(
            self.id,
            user_id,
            admin=admin,
            added_by=added_by,
            approved_by=approved_by,
            confirmed_until=now + self.period,
        )

    # commands
    @staticmethod
    def create(
        group_id: str,
        *,
        name: str,
        primary_contact_id: str,
        admin_ids: tuple[str, ...],
        member_ids: tuple[str, ...],
        email: str | None,
        created_by: str,
        service_desk: bool,
        language: str | None = None,
        now: datetime,
        period: timedelta = CONFIRMATION_PERIOD,
    ) -> list:
        """The primary contact is always an admin. Who the service desk names is a member at
        once; a founder is, and everyone else they name is invited. Every member starts
        confirmed for a period (they just saw the composition)."""
        admins = tuple(dict.fromkeys((primary_contact_id, *admin_ids)))
        named = tuple(dict.fromkeys((*admins, *member_ids)))
        members = named if service_desk else tuple(u for u in named if u == created_by)
        if primary_contact_id not in members:
            raise NotAllowed("the primary contact must be the founder or named by the service desk")
        events: list = [
            GroupCreated(
                group_id=group_id,
                name=name,
                primary_contact_id=primary_contact_id,
                admin_ids=tuple(u for u in admins if u in members),
                member_ids=members,
                email=email,
                created_by=created_by,
                language=language,  # type: ignore[arg-type]
            )
        ]
        for user_id in members:
            events += joined(
                group_id,
                user_id,
                admin=user_id in admins,
                added_by=created_by,
                approved_by=created_by if service_desk else user_id,
                confirmed_until=now + period,
            )
        events += [
            GroupMemberInvited(
                group_id=group_id, user_id=user_id, admin=user_id in admins, invited_by=created_by
            )
            for user_id in named
            if user_id not in members
        ]
        return events

    def add_member(
        self, user_id: str, *, admin: bool, by: str, service_desk: bool, now: datetime
    ) -> list:
        """A group admin invites; the service desk adds (its approval), also someone invited."""
        self._must_exist()
        self._must_manage(by, service_desk)
        if user_id in self.members:
            raise AlreadyMember(f"user {user_id} is already a member of group {self.id}")
        if service_desk:
            return self._joined(user_id, admin=admin, added_by=by, approved_by=by, now=now)
        if user_id in self.invitations:
            raise AlreadyInvited(f"user {user_id} is already invited to group {self.id}")
        return [GroupMemberInvited(group_id=self.id, user_id=user_id, admin=admin, invited_by=by)]

    def accept_invitation(self, user_id: str, now: datetime) -> list:
        """The invitee says yes: a member (an admin if so invited) from now on."""
        self._must_exist()
        invitation = self._invitation(user_id)
        return self._joined(
            user_id,
            admin=invitation.admin,
            added_by=invitation.invited_by,
            approved_by=user_id,
            now=now,
        )

    def approve_invitation(
        self, user_id: str, *, by: str, service_desk: bool, now: datetime
    ) -> list:
        """The service desk accepts on the invitee's behalf (e.g. on their written request)."""
        self._must_exist()
        if not service_desk:
            raise NotAllowed("only the invitee or the service desk accepts an invitation")
        invitation = self._invitation(user_id)
        return self._joined(
            user_id, admin=invitation.admin, added_by=invitation.invited_by, approved_by=by, now=now
        )

    def decline_invitation(self, user_id: str) -> list:
        self._must_exist()
        self._invitation(user_id)
        return [GroupInvitationDeclined(group_id=self.id, user_id=user_id)]

    def remove_member(self, user_id: str, *, by: str, service_desk: bool) -> list:
        """A member leaves or is removed; an open invitation is declined by the invitee or
        withdrawn by a group admin or the service desk."""
        self._must_exist()
        if by != user_id:
            self._must_manage(by, service_desk)
        if user_id in self.invitations:
            if by == user_id:
                return [GroupInvitationDeclined(group_id=self.id, user_id=user_id)]
            return [GroupInvitationWithdrawn(group_id=self.id, user_id=user_id, withdrawn_by=by)]
        if user_id not in self.members:
            raise NotAMember(f"user {user_id} is not a member of group {self.id}")
        if user_id == self.primary_contact_id:
            raise PrimaryContactCannotLeave("the primary contact cannot be removed from the group")
        return [GroupMemberRemoved(group_id=self.id, user_id=user_id, removed_by=by)]

    def set_admin(self, user_id: str, admin: bool, *, by: str, service_desk: bool) -> list:
        self._must_exist()
        self._must_manage(by, service_desk)
        self._must_be_member(user_id)
        if not admin and user_id == self.primary_contact_id:
            raise PrimaryContactIsAdmin("the primary contact is always an admin")
        if self.members[user_id].admin == admin:
            return []
        return [GroupAdminChanged(group_id=self.id, user_id=user_id, admin=admin, changed_by=by)]

    def set_primary_contact(self, user_id: str, *, by: str, service_desk: bool) -> list:
        self._must_exist()
        self._must_manage(by, service_desk)
        self._must_be_member(user_id)
        if user_id == self.primary_contact_id:
            return []
        events: list = []
        if not self.members[user_id].admin:
            events.append(
                GroupAdminChanged(group_id=self.id, user_id=user_id, admin=True, changed_by=by)
            )
        events.append(
            GroupPrimaryContactChanged(group_id=self.id, primary_contact_id=user_id, changed_by=by)
        )
        return events

    def confirm_membership(self, user_id: str, now: datetime) -> list:
        self._must_exist()
        if user_id not in self.members:
            raise NotAMember(f"user {user_id} is not a member of group {self.id}")
        return [
            GroupMembershipConfirmed(
                group_id=self.id, user_id=user_id, confirmed_until=now + self.period
            )
        ]

    def due_reminders(self, now: datetime) -> list:
        """One reminder per member per lapsed period: idempotent whoever runs it, how often."""
        return [
            GroupMembershipConfirmationDue(
                group_id=self.id, user_id=m.user_id, due_since=m.confirmed_until
            )
            for m in self.members.values()
            if m.confirmed_until <= now and m.reminded_for != m.confirmed_until
        ]

    def lapses(self, now: datetime, grace: timedelta) -> list:
        """One `GroupMembershipLapsed` per member unconfirmed past the grace period, once per
        due date (the reminder came at the due date, before)."""
        return [
            GroupMembershipLapsed(group_id=self.id, user_id=m.user_id, due_since=m.confirmed_until)
            for m in self.members.values()
            if m.lapsed(now, grace) and m.lapsed_for != m.confirmed_until
        ]

    def report_composition(self, user_id: str, remark: str) -> list:
        """A member says the composition is wrong: the group's admins hear it (the reporter
        excepted); with no other admin, the service desk does (`admin_ids` empty)."""
        self._must_exist()
        if user_id not in self.members:
            raise NotAMember(f"user {user_id} is not a member of group {self.id}")
        remark = remark.strip()
        if not remark:
            raise CompositionReportEmpty("say what is wrong with the group's composition")
        admins = tuple(sorted(u for u, m in self.members.items() if m.admin and u != user_id))
        return [
            GroupCompositionReported(
                group_id=self.id, reported_by=user_id, remark=remark, admin_ids=admins
            )
        ]
