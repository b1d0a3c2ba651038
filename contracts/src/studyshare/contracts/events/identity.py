"""Events of the identity service (`identity.events`): people, groups, departments, logins.

Personal data is the minimum the consumers need: notify needs names, email, mobile and
language to reach people; nobody gets passwords, TOTP secrets or tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from studyshare.contracts.events.base import DomainEvent, registry, renamed

Language = Literal["en", "nl", "fr", "de"]
Profession = Literal[
    "physician", "dentist", "specialist", "department_staff", "service_desk", "auditor", "other"
]
Registry = Literal["RIZIV", "BIG", "INSEE", "HIN", "UCGN", "PNB", "NPI"]
BreakTheGlassPolicy = Literal["institution", "nobody", "environment"]
"""Who may break the glass on a department's studies: the staff and physicians of the same
institution (default), nobody, or any approved physician of the same environment."""


class PhysicianNumber(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    registry: Registry
    number: str


@registry.register
class UserRegistered(DomainEvent):
    """An account exists (registered by an admin, or self-registered and pending approval)."""

    aggregate_type = "User"

    user_id: str
    username: str
    first_name: str
    last_name: str
    email: str | None = None
    email_public: bool = False
    mobile: str | None = None
    mobile_public: bool = False
    language: Language = "en"
    environment: str = "be"
    profession: Profession = "physician"
    physician_numbers: tuple[PhysicianNumber, ...] = ()
    roles: tuple[str, ...] = ()
    department_ids: tuple[str, ...] = ()
    admin_of: tuple[str, ...] = ()
    pending_approval: bool = False
    registered_by: str | None = None


@registry.register
class UserApproved(DomainEvent):
    aggregate_type = "User"

    user_id: str
    approved_by: str


@registry.register
class UserProfileChanged(DomainEvent):
    """Only the fields that changed are set."""

    aggregate_type = "User"

    user_id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    email_public: bool | None = None
    mobile: str | None = None
    mobile_public: bool | None = None
    language: Language | None = None
    physician_numbers: tuple[PhysicianNumber, ...] | None = None


@registry.register
class MobileChangeRequested(DomainEvent):
    """The user (having given their current password) asked to register a new mobile number;
    notify sends a code to that new number. The code is sealed for notify only. The number
    changes only when the code comes back (`UserProfileChanged`, then `MobileNumberChanged`)."""

    aggregate_type = "User"

    user_id: str
    change_id: str
    mobile: str
    sealed_code: str
    expires_at: datetime
    language: Language = "en"


@registry.register
class MobileNumberChanged(DomainEvent):
    """The user confirmed a new mobile number with the code sent to it; notify tells the
    previous number (follows the `UserProfileChanged` that carries the new number)."""

    aggregate_type = "User"

    user_id: str
    change_id: str
    previous_mobile: str | None = None
    language: Language = "en"


@registry.register
class UserRolesChanged(DomainEvent):
    """The account's roles and department memberships now are exactly these."""

    aggregate_type = "User"

    user_id: str
    roles: tuple[str, ...]
    department_ids: tuple[str, ...]
    admin_of: tuple[str, ...]
    changed_by: str


@registry.register
class UserDeactivated(DomainEvent):
    aggregate_type = "User"

    user_id: str
    deactivated_by: str


@registry.register
class PasswordChanged(DomainEvent):
    """The account's password was replaced (the hash never leaves identity)."""

    aggregate_type = "User"

    user_id: str
    changed_by: str


@registry.register
class ExternalIdentityLinked(DomainEvent):
    """An external identity (e.g. Belgian eID) may now log in as this account."""

    aggregate_type = "User"

    user_id: str
    provider: str


@registry.register
class RefreshTokenReuseDetected(DomainEvent):
    """A rotated refresh token was presented again: the whole session was revoked."""

    aggregate_type = "User"

    user_id: str
    session_id: str
    source_ip: str | None = None


@registry.register
class TOTPEnabled(DomainEvent):
    """The account confirmed a second factor (the secret never leaves identity)."""

    aggregate_type = "User"

    user_id: str


@registry.register
class TOTPDisabled(DomainEvent):
    """The service desk removed the second factor (e.g. a lost phone); it can be enrolled anew."""

    aggregate_type = "User"

    user_id: str
    disabled_by: str


@registry.register
class AccountUnlocked(DomainEvent):
    """The service desk lifted a brute-force lock before it ran out."""

    aggregate_type = "User"

    user_id: str
    unlocked_by: str


@registry.register
class LoginSucceeded(DomainEvent):
    aggregate_type = "User"

    user_id: str
    method: Literal["password", "password+totp", "eid", "eid+totp", "refresh"]
    session_id: str
    source_ip: str | None = None


@registry.register
class LoginFailed(DomainEvent):
    """A failed login. `user_id` is set when the account exists (never told to the caller)."""

    aggregate_type = "LoginAttempt"

    attempt_id: str
    user_id: str | None = None
    reason: Literal[
        "bad_credentials", "bad_totp", "locked", "not_approved", "wrong_environment", "deactivated"
    ]
    consecutive_failures: int = 0
    source_ip: str | None = None


@registry.register
class AccountLocked(DomainEvent):
    aggregate_type = "User"

    user_id: str
    locked_until: datetime
    consecutive_failures: int


@registry.register
class LoggedOut(DomainEvent):
    aggregate_type = "User"

    user_id: str
    session_id: str


@registry.register
class GroupCreated(DomainEvent):
    """A group practice; its primary contact comes first in every composition shown.

    `member_ids` and `admin_ids` are members from this moment (the founder; everyone the
    service desk named). Anyone else a founder names is invited (`GroupMemberInvited`) and
    becomes a member only with a `GroupMemberAdded`, once they accept or the service desk
    approves."""

    aggregate_type = "Group"

    group_id: str
    name: str
    primary_contact_id: str
    admin_ids: tuple[str, ...] = ()
    member_ids: tuple[str, ...] = ()
    email: str | None = None
    created_by: str
    language: Language | None = None
    """The practice's language for mails to it: chosen at creation, else its primary
    contact's. None on events before it existed."""


@registry.register
class GroupMemberAdded(DomainEvent):
    """The user is a member from now on: the only event (with `GroupCreated`) that makes one.
    `added_by` asked for it; `approved_by` agreed to it: the member themselves (accepting an
    invitation, or founding the group) or the service desk. None on events before issue 15."""

    aggregate_type = "Group"

    group_id: str
    user_id: str
    admin: bool = False
    added_by: str
    approved_by: str | None = None


@registry.register
class GroupMemberInvited(DomainEvent):
    """The user was asked to join the group (as an admin when `admin`). No membership yet: the
    invitee sees nothing of the group and the group nothing of theirs until a
    `GroupMemberAdded` (they accept, or the service desk approves)."""

    aggregate_type = "Group"

    group_id: str
    user_id: str
    admin: bool = False
    invited_by: str


@registry.register
class GroupInvitationDeclined(DomainEvent):
    """The invitee said no; the invitation is gone."""

    aggregate_type = "Group"

    group_id: str
    user_id: str


@registry.register
class GroupInvitationWithdrawn(DomainEvent):
    """A group admin or the service desk took the invitation back before it was accepted."""

    aggregate_type = "Group"

    group_id: str
    user_id: str
    withdrawn_by: str


@registry.register
class GroupMemberRemoved(DomainEvent):
    aggregate_type = "Group"

    group_id: str
    user_id: str
    removed_by: str


@registry.register
class GroupAdminChanged(DomainEvent):
    """A member became a group admin (`admin` true) or stopped being one."""

    aggregate_type = "Group"

    group_id: str
    user_id: str
    admin: bool
    changed_by: str


@registry.register
class GroupPrimaryContactChanged(DomainEvent):
    """Another member is now the primary contact (always an admin too)."""

    aggregate_type = "Group"

    group_id: str
    primary_contact_id: str
    changed_by: str


@registry.register
class GroupMembershipConfirmed(DomainEvent):
    aggregate_type = "Group"

    group_id: str
    user_id: str
    confirmed_until: datetime


@registry.register
class GroupMembershipConfirmationDue(DomainEvent):
    """Reminder: the member must confirm the group's composition (every 3 months)."""

    aggregate_type = "Group"

    group_id: str
    user_id: str
    due_since: datetime


@registry.register
class GroupMembershipLapsed(DomainEvent):
    """The member left the 3-monthly confirmation unanswered past the deployment's grace
    period: until they confirm (`GroupMembershipConfirmed`), the membership gives no access to
    the colleagues' studies nor to the group's shares (and theirs none to the colleagues)."""

    aggregate_type = "Group"

    group_id: str
    user_id: str
    due_since: datetime


@registry.register
class GroupCompositionReported(DomainEvent):
    """A member reports that the group's composition is wrong ("report this to a group
    administrator or the service desk"). `admin_ids` are the admins told (the reporter
    excepted); none: the service desk is told."""

    aggregate_type = "Group"

    group_id: str
    reported_by: str
    remark: str
    admin_ids: tuple[str, ...] = ()


class PacsEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ae_title: str
    host: str
    port: int


class ReferenceNumberRule(BaseModel):
    """Minimum complexity of a department's patient reference numbers."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    length: int = 10
    alphabet: Literal["digits", "alphanumeric"] = "alphanumeric"


@registry.register
class DepartmentCreated(DomainEvent):
    """A sending source (radiology department), or a PACS destination one can share with."""

    aggregate_type = "Department"

    department_id: str
    name: str
    country: str = "be"
    kind: Literal["radiology", "pacs"] = "radiology"
    email: str | None = None
    pacs: PacsEndpoint | None = None
    rsw: PacsEndpoint | None = None
    created_by: str
    institution_id: str | None = None
    """The institution (hospital) the department belongs to; departments of one institution
    share it. None: the department is an institution of its own."""
    language: Language | None = None
    """The department's language for mails to it (a share's mail language counts it). None:
    not known."""


@registry.register
class DepartmentPolicySet(DomainEvent):
    """The department's sharing and patient-access policy, complete each time."""

    aggregate_type = "Department"

    department_id: str
    default_validity_days: int = 30
    max_validity_days: int | None = None
    unlimited_allowed: bool = True
    reference_number_rule: ReferenceNumberRule = ReferenceNumberRule()
    payment_required: bool = False
    patient_otp_required: bool = False
    hipaa_confirmation_required: bool = False
    set_by: str
    break_the_glass: BreakTheGlassPolicy = "institution"
    """Who may break the glass on the department's studies (never an auditor)."""
    default_validity_months: int | None = None
    """When set, the default validity is that many calendar months from the moment of sharing
    (`default_validity_days` then holds only a rough equivalent, 30 a month, for older readers).
    None (events written before it existed): `default_validity_days` days."""
    time_zone: str | None = None
    """The department's IANA time zone: a validity date chosen without a time ends at the end
    of that day there. None: the zone of the department's country (UTC when unknown)."""
    patient_report_access: Literal["none", "read"] | None = None
    """Whether a patient logged in with a reference number reads the report. None: the study
    store's deployment default (`STUDYSHARE_PATIENT_REPORT_DEFAULT`)."""
    patient_download_allowed: bool | None = None
    """Whether a patient may download the study. None: the deployment default."""
    reference_number_validity_days: int | None = None
    """How long a reference number is valid from its issue, "as allowed by the source": its
    default "valid to", and the latest one staff may set. None: no date restriction."""
    reference_numbers_on_arrival: bool = False
    """Issue a reference number automatically when a study of the department arrives."""


@registry.register
class DepartmentAdminAssigned(DomainEvent):
    aggregate_type = "Department"

    department_id: str
    user_id: str
    assigned_by: str


@registry.register
class DepartmentAdminRemoved(DomainEvent):
    aggregate_type = "Department"

    department_id: str
    user_id: str
    removed_by: str


@registry.register
class PatientLoginSucceeded(DomainEvent):
    """v2 (and the other `Patient` events' v2) name the reference number by its id
    (`studyshare.plumbing.reference_ids`); v1 carried the number, or what was typed."""

    aggregate_type = "Patient"
    schema_version = 2

    reference_id: str
    study_uid: str
    session_id: str
    source_ip: str | None = None


@registry.register
class PatientLoginFailed(DomainEvent):
    """`failed_attempts` counts consecutive failures on this reference number."""

    aggregate_type = "Patient"
    schema_version = 2

    reference_id: str
    study_uid: str | None = None
    reason: Literal[
        "unknown",
        "birth_date",
        "pincode",
        "otp",
        "outside_validity",
        "revoked",
        "locked",
        "rule_violation",
    ]
    failed_attempts: int
    source_ip: str | None = None
    locked_until: datetime | None = None


@registry.register
class PincodeFailed(DomainEvent):
    """A wrong pincode on a reference number (the Access tab shows the count)."""

    aggregate_type = "Patient"
    schema_version = 2

    reference_id: str
    study_uid: str
    failed_attempts: int


@registry.register
class PatientOTPIssued(DomainEvent):
    """An SMS code for a patient login; the code is sealed for notify only."""

    aggregate_type = "Patient"
    schema_version = 2

    reference_id: str
    study_uid: str
    mobile: str
    sealed_code: str
    language: Language = "en"
    expires_at: datetime


for _patient_event in (
    "PatientLoginSucceeded",
    "PatientLoginFailed",
    "PincodeFailed",
    "PatientOTPIssued",
):
    registry.upcaster(_patient_event, from_version=1)(renamed("reference_number", "reference_id"))
