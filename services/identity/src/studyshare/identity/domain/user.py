"""The User aggregate: an account, its profile, roles and lifecycle. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from studyshare.contracts.events.identity import (
    AccountLocked,
    AccountUnlocked,
    ExternalIdentityLinked,
    MobileChangeRequested,
    MobileNumberChanged,
    PasswordChanged,
    PhysicianNumber,
    TOTPDisabled,
    TOTPEnabled,
    UserApproved,
    UserDeactivated,
    UserProfileChanged,
    UserRegistered,
    UserRolesChanged,
)
from studyshare.contracts.tokens import Role
from studyshare.identity.domain.exceptions import (
    AlreadyApproved,
    CurrentPasswordRequired,
    MobileChangeNeedsCode,
    TOTPAlreadyEnabled,
    TOTPNotEnabled,
    UserNotFound,
)
from studyshare.plumbing.domain import Aggregate, applies

ROLES: tuple[Role, ...] = (
    "physician",
    "department_staff",
    "department_admin",
    "service_desk",
    "auditor",
)
PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "email_public",
    "mobile",
    "mobile_public",
    "language",
    "physician_numbers",
)
# Who one is: changing these needs the current password (the mobile also a code sent to it).
PASSWORD_GUARDED_FIELDS = ("first_name", "last_name", "email", "physician_numbers", "mobile")


@dataclass(frozen=True)
class Registration:
    """What it takes to open an account (validated by the API model)."""

    username: str
    first_name: str
    last_name: str
    email: str | None = None
    email_public: bool = False
    mobile: str | None = None
    mobile_public: bool = False
    language: str = "en"
    environment: str = "be"
    profession: str = "physician"
    physician_numbers: tuple[PhysicianNumber, ...] = ()
    roles: tuple[str, ...] = ("physician",)
    department_ids: tuple[str, ...] = ()
    admin_of: tuple[str, ...] = ()


class User(Aggregate):
    aggregate_type = "User"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.username = ""
        self.profile: dict[str, Any] = {}
        self.environment = "be"
        self.roles: tuple[str, ...] = ()
        self.department_ids: tuple[str, ...] = ()
        self.admin_of: tuple[str, ...] = ()
        self.pending_approval = False
        self.active = False
        self.totp_enabled = False
        self.locked_until: datetime | None = None

    # folds
    @applies
    def when_user_registered(self, e: UserRegistered) -> None:
        self.username = e.username
        self.profile = {f: getattr(e, f) for f in PROFILE_FIELDS}
        self.environment = e.environment
        self.roles, self.department_ids, self.admin_of = e.roles, e.department_ids, e.admin_of
        self.pending_approval = e.pending_approval
        self.active = True

    @applies
    def when_user_approved(self, e: UserApproved) -> None:
        self.pending_approval = False

    @applies
    def when_user_profile_changed(self, e: UserProfileChanged) -> None:
        for field in PROFILE_FIELDS:
            value = getattr(e, field)
            if value is not None:
                self.profile[field] = value

    @applies
    def when_user_roles_changed(self, e: UserRolesChanged) -> None:
        self.roles, self.department_ids, self.admin_of = e.roles, e.department_ids, e.admin_of

    @applies
    def when_user_deactivated(self, e: UserDeactivated) -> None:
        self.active = False

    @applies
    def when_t_o_t_p_enabled(self, e: TOTPEnabled) -> None:
        self.totp_enabled = True

    @applies
    def when_t_o_t_p_disabled(self, e: TOTPDisabled) -> None:
        self.totp_enabled = False

    @applies
    def when_account_locked(self, e: AccountLocked) -> None:
        self.locked_until = e.locked_until

    @applies
    def when_account_unlocked(self, e: AccountUnlocked) -> None:
        self.locked_until = None

    # commands
    @staticmethod
    def register(
        user_id: str, reg: Registration, *, pending: bool, registered_by: str | None
    ) -> list[UserRegistered]:
        return [
            UserRegistered(
                user_id=user_id,
                username=reg.username,
                first_name=reg.first_name,
                last_name=reg.last_name,
                email=reg.email,
                email_public=reg.email_public,
                mobile=reg.mobile,
                mobile_public=reg.mobile_public,
                language=reg.language,  # type: ignore[arg-type]
                environment=reg.environment,
                profession=reg.profession,  # type: ignore[arg-type]
                physician_numbers=reg.physician_numbers,
                roles=tuple(dict.fromkeys(reg.roles)),
                department_ids=tuple(dict.fromkeys(reg.department_ids)),
                admin_of=tuple(dict.fromkeys(reg.admin_of)),
                pending_approval=pending,
                registered_by=registered_by,
            )
        ]

    def _must_exist(self) -> None:
        if not self.exists:
            raise UserNotFound(f"user {self.id} does not exist")

    def approve(self, by: str) -> list[UserApproved]:
        self._must_exist()
        if not self.pending_approval:
            raise AlreadyApproved(f"user {self.id} is not waiting for approval")
        return [UserApproved(user_id=self.id, approved_by=by)]

    def change_profile(
        self, changes: dict[str, Any], *, password_confirmed: bool = False
    ) -> list[UserProfileChanged]:
        """Names, e-mail and physician numbers only with the current password confirmed; the
        mobile never here (`request_mobile_change`, `confirm_mobile_change`)."""
        self._must_exist()
        if changes.get("mobile") is not None:
            raise MobileChangeNeedsCode(
                "a new mobile number needs the code sent to it: POST /api/users/me/mobile"
            )
        guarded = sorted(k for k in PASSWORD_GUARDED_FIELDS if changes.get(k) is not None)
        if guarded and not password_confirmed:
            raise CurrentPasswordRequired(
                f"changing {', '.join(guarded)} needs your current password (current_password)"
            )
        changed = {
            k: v
            for k, v in changes.items()
            if k in PROFILE_FIELDS and v is not None and self.profile.get(k) != v
        }
        return [UserProfileChanged(user_id=self.id, **changed)] if changed else []

    def request_mobile_change(
        self, change_id: str, mobile: str, sealed_code: str, expires_at: datetime
    ) -> list[MobileChangeRequested]:
        """The current password was confirmed; a code goes to the new number (sealed for
        notify). It voids any earlier pending change."""
        self._must_exist()
        return [
            MobileChangeRequested(
                user_id=self.id,
                change_id=change_id,
                mobile=mobile,
                sealed_code=sealed_code,
                expires_at=expires_at,
                language=self.profile.get("language") or "en",
            )
        ]

    def confirm_mobile_change(
        self, change_id: str, mobile: str
    ) -> list[UserProfileChanged | MobileNumberChanged]:
        """The code sent to the new number came back: the number changes, and the previous
        number is told."""
        self._must_exist()
        previous = self.profile.get("mobile")
        return [
            UserProfileChanged(user_id=self.id, mobile=mobile),
            MobileNumberChanged(
                user_id=self.id,
                change_id=change_id,
                previous_mobile=previous if previous != mobile else None,
                language=self.profile.get("language") or "en",
            ),
        ]

    def set_roles(
        self,
        by: str,
        *,
        roles: tuple[str, ...] | None = None,
        department_ids: tuple[str, ...] | None = None,
        admin_of: tuple[str, ...] | None = None,
    ) -> list[UserRolesChanged]:
        self._must_exist()
        new = (
            tuple(dict.fromkeys(self.roles if roles is None else roles)),
            tuple(dict.fromkeys(self.department_ids if department_ids is None else department_ids)),
            tuple(dict.fromkeys(self.admin_of if admin_of is None else admin_of)),
        )
        if new == (self.roles, self.department_ids, self.admin_of):
            return []
        return [
            UserRolesChanged(
                user_id=self.id,
                roles=new[0],
                department_ids=new[1],
                admin_of=new[2],
                changed_by=by,
            )
        ]

    def deactivate(self, by: str) -> list[UserDeactivated]:
        self._must_exist()
        return [UserDeactivated(user_id=self.id, deactivated_by=by)] if self.active else []

    def enable_totp(self) -> list[TOTPEnabled]:
        self._must_exist()
        if self.totp_enabled:
            raise TOTPAlreadyEnabled("a second factor is already enabled on this account")
        return [TOTPEnabled(user_id=self.id)]

    def disable_totp(self, by: str) -> list[TOTPDisabled]:
        self._must_exist()
        if not self.totp_enabled:
            raise TOTPNotEnabled("this account has no second factor")
        return [TOTPDisabled(user_id=self.id, disabled_by=by)]

    def unlock(self, by: str) -> list[AccountUnlocked]:
        self._must_exist()
        return [AccountUnlocked(user_id=self.id, unlocked_by=by)]

    def change_password(self, by: str) -> list[PasswordChanged]:
        self._must_exist()
        return [PasswordChanged(user_id=self.id, changed_by=by)]

    def lock(self, until: datetime, failures: int) -> list[AccountLocked]:
        self._must_exist()
        return [AccountLocked(user_id=self.id, locked_until=until, consecutive_failures=failures)]

    def link_external(self, provider: str) -> list[ExternalIdentityLinked]:
        self._must_exist()
        return [ExternalIdentityLinked(user_id=self.id, provider=provider)]
