"""The Group aggregate: a group practice, its members, admins and primary contact, and the
3-monthly confirmation of its composition by every member. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from studyshare.contracts.events.identity import (
    GroupAdminChanged,
    GroupCreated,
    GroupMemberAdded,
    GroupMemberRemoved,
    GroupMembershipConfirmationDue,
    GroupMembershipConfirmed,
    GroupPrimaryContactChanged,
)
from studyshare.identity.domain.exceptions import (
    AlreadyMember,
    GroupNotFound,
    NotAllowed,
    NotAMember,
    PrimaryContactCannotLeave,
    PrimaryContactIsAdmin,
)
from studyshare.plumbing.aggregate import Aggregate

CONFIRMATION_PERIOD = timedelta(days=91)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Membership:
    user_id: str
    admin: bool
    confirmed_until: datetime
    reminded_for: datetime | None = None


class Group(Aggregate):
    aggregate_type = "Group"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.primary_contact_id = ""
        self.members: dict[str, Membership] = {}
        self.period = CONFIRMATION_PERIOD

    # folds (times come from the event, so a rebuild is exact)
    def when_group_created(self, e: GroupCreated) -> None:
        self.name = e.name
        self.primary_contact_id = e.primary_contact_id

    def when_group_member_added(self, e: GroupMemberAdded) -> None:
        self.members[e.user_id] = Membership(e.user_id, e.admin, EPOCH)

    def when_group_member_removed(self, e: GroupMemberRemoved) -> None:
        self.members.pop(e.user_id, None)

    def when_group_admin_changed(self, e: GroupAdminChanged) -> None:
        if e.user_id in self.members:
            self.members[e.user_id].admin = e.admin

    def when_group_primary_contact_changed(self, e: GroupPrimaryContactChanged) -> None:
        self.primary_contact_id = e.primary_contact_id

    def when_group_membership_confirmed(self, e: GroupMembershipConfirmed) -> None:
        if e.user_id in self.members:
            self.members[e.user_id].confirmed_until = e.confirmed_until

    def when_group_membership_confirmation_due(self, e: GroupMembershipConfirmationDue) -> None:
        if e.user_id in self.members:
            self.members[e.user_id].reminded_for = e.due_since

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
        now: datetime,
        period: timedelta = CONFIRMATION_PERIOD,
    ) -> list:
        """The primary contact is always an admin; every member starts confirmed for a period
        (they just saw the composition)."""
        admins = tuple(dict.fromkeys((primary_contact_id, *admin_ids)))
        members = tuple(dict.fromkeys((*admins, *member_ids)))
        events: list = [
            GroupCreated(
                group_id=group_id,
                name=name,
                primary_contact_id=primary_contact_id,
                admin_ids=admins,
                member_ids=members,
                email=email,
                created_by=created_by,
            )
        ]
        for user_id in members:
            events.append(
                GroupMemberAdded(
                    group_id=group_id, user_id=user_id, admin=user_id in admins, added_by=created_by
                )
            )
            events.append(
                GroupMembershipConfirmed(
                    group_id=group_id, user_id=user_id, confirmed_until=now + period
                )
            )
        return events

    def add_member(
        self, user_id: str, *, admin: bool, by: str, service_desk: bool, now: datetime
    ) -> list:
        self._must_exist()
        self._must_manage(by, service_desk)
        if user_id in self.members:
            raise AlreadyMember(f"user {user_id} is already a member of group {self.id}")
        return [
            GroupMemberAdded(group_id=self.id, user_id=user_id, admin=admin, added_by=by),
            GroupMembershipConfirmed(
                group_id=self.id, user_id=user_id, confirmed_until=now + self.period
            ),
        ]

    def remove_member(self, user_id: str, *, by: str, service_desk: bool) -> list:
        self._must_exist()
        if by != user_id:
            self._must_manage(by, service_desk)
        if user_id not in self.members:
            raise NotAMember(f"user {user_id} is not a member of group {self.id}")
        if user_id == self.primary_contact_id:
            raise PrimaryContactCannotLeave("the primary contact cannot be removed from the group")
        return [GroupMemberRemoved(group_id=self.id, user_id=user_id, removed_by=by)]

    def set_admin(self, user_id: str, admin: bool, *, by: str, service_desk: bool) -> list:
        self._must_exist()
        self._must_manage(by, service_desk)
        if user_id not in self.members:
            raise NotAMember(f"user {user_id} is not a member of group {self.id}")
        if not admin and user_id == self.primary_contact_id:
            raise PrimaryContactIsAdmin("the primary contact is always an admin")
        if self.members[user_id].admin == admin:
            return []
        return [GroupAdminChanged(group_id=self.id, user_id=user_id, admin=admin, changed_by=by)]

    def set_primary_contact(self, user_id: str, *, by: str, service_desk: bool) -> list:
        self._must_exist()
        self._must_manage(by, service_desk)
        if user_id not in self.members:
            raise NotAMember(f"user {user_id} is not a member of group {self.id}")
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
