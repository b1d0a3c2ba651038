"""Request and response bodies of the identity API."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)
from pydantic import Strict as StrictMode

from studyshare.contracts.events.identity import (
    BreakTheGlassPolicy,
    Language,
    PacsEndpoint,
    PhysicianNumber,
    Profession,
    ReferenceNumberRule,
    Registry,
)
from studyshare.contracts.tokens import Role


def _integer(value: Any) -> Any:
    """JSON integers, also written 30.0 (JSON Schema's `integer`); never strings or booleans."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def json_int(ge: int, le: int) -> Any:
    """A bounded integer (bounds before the validator, so the OpenAPI keeps min/max)."""
    return Annotated[int, StrictMode(), Ge(ge), Le(le), BeforeValidator(_integer)]


ReferenceLength = json_int(4, 64)
Days = json_int(1, 36500)
Months = json_int(1, 1200)
Port = json_int(1, 65535)


#: Unicode's line and paragraph separators: line breaks, though no control characters
SEPARATORS = frozenset("\u2028\u2029")


def _one_line(name: str) -> str:
    """No control character (CR, LF, TAB, NUL, ESC, NEL, ...) nor line separator: a name goes
    into mail headers and bodies, where a line break forges a header or a line."""
    if any(unicodedata.category(c) == "Cc" or c in SEPARATORS for c in name):
        raise ValueError("a name may not contain line breaks, tabs or other control characters")
    return name


def one_line_name(max_length: int) -> Any:
    """A name of someone or something, shown in pages and mails: one line of text."""
    return Annotated[
        str, StringConstraints(min_length=1, max_length=max_length), AfterValidator(_one_line)
    ]


Username = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
Name = one_line_name(100)
#: a group practice's or a department's name
OrganisationName = one_line_name(200)
Email = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
Mobile = Field(default=None, max_length=32, pattern=r"^\+?[0-9 ()./-]{6,30}$")
Code = Field(min_length=4, max_length=12)


def physician_numbers(items: list[PhysicianNumberBody] | None) -> tuple[PhysicianNumber, ...]:
    return tuple(PhysicianNumber(registry=p.registry, number=p.number) for p in items or ())


def reference_number_rule(body: RuleBody) -> ReferenceNumberRule:
    return ReferenceNumberRule(length=body.length, alphabet=body.alphabet)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhysicianNumberBody(Strict):
    registry: Registry
    number: str = Field(min_length=1, max_length=32)


class RuleBody(Strict):
    """Minimum complexity of the department's reference numbers."""

    length: ReferenceLength = 10
    alphabet: Literal["digits", "alphanumeric"] = "alphanumeric"


class LoginRequest(Strict):
    username: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    otp: str | None = Field(default=None, max_length=12)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - the token scheme
    group_confirmations_due: list[str] | None = Field(
        default=None,
        description="at login: the groups whose 3-monthly membership confirmation is due "
        "(`GET /api/users/me/group-confirmations`, `POST /api/groups/{id}/confirm-membership`)",
    )


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutRequest(Strict):
    refresh_token: str | None = Field(default=None, max_length=512)


class PatientLoginRequest(Strict):
    reference_number: str = Field(min_length=1, max_length=64)
    date_of_birth: date
    pincode: str | None = Field(default=None, max_length=64)
    otp: str | None = Field(default=None, max_length=12)


class PatientTokenResponse(BaseModel):
    access_token: str
    expires_in: int
    expires_at: datetime
    study_uid: str
    token_type: str = "Bearer"  # noqa: S105 - the token scheme


class Portal(BaseModel):
    code: str
    portal_url: str


class EnvironmentQuery(Strict):
    username: str = Field(min_length=1, max_length=200)


class OfferedEnvironment(BaseModel):
    """The same shape for every username; `current` says whether it is this portal's."""

    environment: str
    portal_url: str | None
    current: bool


class EnvironmentsResponse(BaseModel):
    current: str
    environments: list[Portal]


class ProfileFields(Strict):
    email: str | None = Email
    email_public: StrictBool = False
    mobile: str | None = Mobile
    mobile_public: StrictBool = False
    language: Language = "en"
    physician_numbers: list[PhysicianNumberBody] = Field(default_factory=list, max_length=10)


class SelfRegistration(ProfileFields):
    username: str = Username
    password: str = Field(min_length=10, max_length=1024)
    first_name: Name
    last_name: Name
    profession: Profession = "physician"
    environment: str | None = Field(default=None, min_length=2, max_length=8)


class AdminRegistration(SelfRegistration):
    roles: list[Role] = Field(default_factory=lambda: ["physician"], max_length=5)
    department_ids: list[str] = Field(default_factory=list, max_length=50)
    admin_of: list[str] = Field(default_factory=list, max_length=50)


class Created(BaseModel):
    id: str


class UserCreated(Created):
    user_id: str
    status: Literal["pending", "active"]


class GroupCreated(Created):
    group_id: str


class DepartmentCreated(Created):
    department_id: str


class UserView(BaseModel):
    user_id: str
    username: str | None = None
    first_name: str
    last_name: str
    email: str | None = None
    email_public: StrictBool = False
    mobile: str | None = None
    mobile_public: StrictBool = False
    language: Language = "en"
    environment: str = "be"
    profession: str = "physician"
    physician_numbers: list[PhysicianNumber] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    department_ids: list[str] = Field(default_factory=list)
    admin_of: list[str] = Field(default_factory=list)
    status: Literal["pending", "active", "deactivated"] | None = None
    totp_enabled: StrictBool | None = None


class ProfilePatch(Strict):
    """Names, e-mail and physician numbers need `current_password`; a new mobile number goes
    through `POST /api/users/me/mobile` (a code is sent to it)."""

    current_password: str | None = Field(default=None, min_length=1, max_length=1024)
    first_name: Name | None = None
    last_name: Name | None = None
    email: str | None = Email
    email_public: StrictBool | None = None
    mobile: str | None = Mobile
    mobile_public: StrictBool | None = None
    language: Language | None = None
    physician_numbers: list[PhysicianNumberBody] | None = Field(default=None, max_length=10)


class RolesUpdate(Strict):
    roles: list[Role] | None = None
    department_ids: list[str] | None = Field(default=None, max_length=50)
    admin_of: list[str] | None = Field(default=None, max_length=50)


class PasswordChange(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=10, max_length=1024)


class PasswordReset(Strict):
    new_password: str = Field(min_length=10, max_length=1024)


class TOTPBegin(Strict):
    """Enrolling a second factor needs the current password: a holder of the token alone could
    otherwise lock the account's owner out."""

    current_password: str | None = Field(default=None, min_length=1, max_length=1024)


class TOTPEnrolment(BaseModel):
    secret: str
    otpauth_uri: str


class TOTPConfirm(Strict):
    code: str = Code


class MobileChange(Strict):
    """A new mobile number: the current password, then a code is sent to the new number."""

    mobile: str = Field(max_length=32, pattern=r"^\+?[0-9 ()./-]{6,30}$")
    current_password: str | None = Field(default=None, min_length=1, max_length=1024)


class MobileChangeRequested(BaseModel):
    expires_at: datetime


class MobileChangeConfirm(Strict):
    code: str = Code


class Recipient(BaseModel):
    id: str
    kind: Literal["user", "group", "department"]
    department_kind: Literal["radiology", "pacs"] | None = None
    name: str
    subtitle: str | None = None
    language: str | None = None
    match: Literal["exact", "prefix"] | None = None
    """How the query matched (None: listed by "select from list", not searched)."""


class RecipientPage(BaseModel):
    items: list[Recipient]
    total: int
    page: int
    page_size: int


class GroupCreate(Strict):
    name: OrganisationName
    primary_contact_id: str | None = Field(default=None, max_length=64)
    admin_ids: list[str] = Field(default_factory=list, max_length=200)
    member_ids: list[str] = Field(default_factory=list, max_length=500)
    email: str | None = Email
    language: Language | None = Field(
        default=None,
        description="the practice's language for mails to it (none: its primary contact's)",
    )


class GroupMember(BaseModel):
    user_id: str
    first_name: str
    last_name: str
    admin: StrictBool
    primary_contact: StrictBool


class GroupInvitee(BaseModel):
    user_id: str
    first_name: str
    last_name: str
    admin: StrictBool
    invited_by: str


class GroupView(BaseModel):
    group_id: str
    name: str
    email: str | None = None
    primary_contact_id: str
    members: list[GroupMember]
    invited: list[GroupInvitee] | None = Field(
        default=None, description="Open invitations; shown to group admins and the service desk"
    )


class GroupInvitation(BaseModel):
    """An open invitation to join a group, as the invitee sees it (no composition yet)."""

    group_id: str
    group_name: str
    admin: StrictBool
    invited_by: str
    invited_by_name: str
    invited_at: datetime


class MemberAdd(Strict):
    user_id: str = Field(min_length=1, max_length=64)
    admin: StrictBool = False


class MemberRole(Strict):
    admin: StrictBool


class GroupConfirmation(GroupView):
    confirmed_until: datetime
    due: StrictBool
    lapsed: StrictBool = False
    """Unconfirmed past the grace period: no access through this group until confirmed."""


class CompositionReport(Strict):
    remark: str = Field(min_length=1, max_length=2000, description="what is wrong")


class CompositionReported(BaseModel):
    group_id: str
    told: Literal["group_admins", "service_desk"]


class ConfirmedResponse(BaseModel):
    group_id: str
    confirmed_until: datetime


class PolicyBody(Strict):
    default_validity_days: Days | None = Field(
        default=None,
        description="the default validity in days; with neither this nor "
        "default_validity_months, one calendar month",
    )
    default_validity_months: Months | None = Field(
        default=None, description="the default validity in calendar months"
    )
    patient_report_access: Literal["none", "read"] | None = Field(
        default=None,
        description="whether patients (reference number login) read the report; none: the "
        "deployment's default",
    )
    patient_download_allowed: StrictBool | None = Field(
        default=None, description="whether patients may download the study"
    )
    reference_number_validity_days: Days | None = Field(
        default=None,
        description="a reference number is valid this many days from its issue at most "
        "(its default 'valid to'); none: no date restriction",
    )
    reference_numbers_on_arrival: StrictBool = Field(
        default=False,
        description="issue a reference number automatically when a study arrives",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone: a validity date chosen without a time ends at the end "
        "of that day there (none: the zone of the department's country)",
    )
    max_validity_days: Days | None = None
    unlimited_allowed: StrictBool = True
    reference_number_rule: RuleBody = RuleBody()
    payment_required: StrictBool = False
    patient_otp_required: StrictBool = False
    hipaa_confirmation_required: StrictBool = False
    break_the_glass: BreakTheGlassPolicy = Field(
        default="institution",
        description="who may break the glass on the department's studies: the staff and "
        "physicians of the same institution, nobody, or any approved physician of the same "
        "environment (never an auditor)",
    )


class Endpoint(Strict):
    """A DICOM endpoint (PACS or regional health network)."""

    ae_title: str = Field(min_length=1, max_length=16)
    host: str = Field(min_length=1, max_length=253)
    port: Port

    def contract(self) -> PacsEndpoint:
        return PacsEndpoint(ae_title=self.ae_title, host=self.host, port=self.port)


class DepartmentCreate(Strict):
    name: OrganisationName
    country: str = Field(default="be", min_length=2, max_length=8)
    kind: Literal["radiology", "pacs"] = "radiology"
    email: str | None = Email
    pacs: Endpoint | None = None
    rsw: Endpoint | None = None
    policy: PolicyBody | None = None
    language: Language | None = Field(
        default=None, description="the department's language for mails to it"
    )
    institution_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="the institution (hospital) the department belongs to; departments of one "
        "institution share it (none: the department is an institution of its own)",
    )


class DepartmentView(BaseModel):
    department_id: str
    name: str
    country: str
    kind: Literal["radiology", "pacs"]
    email: str | None = None
    pacs: PacsEndpoint | None = Field(
        default=None, description="Shown to the department's admins and the service desk"
    )
    rsw: PacsEndpoint | None = Field(
        default=None, description="Shown to the department's admins and the service desk"
    )
    policy: PolicyBody
    admin_ids: list[str] | None = Field(
        default=None, description="Shown to the department's admins and the service desk"
    )
    institution_id: str | None = None


class UserRef(Strict):
    user_id: str = Field(min_length=1, max_length=64)


class DepartmentMember(Strict):
    user_id: str = Field(min_length=1, max_length=64)
    role: Literal["department_staff", "physician"] = "department_staff"


class ExternalTOTP(Strict):
    login_ticket: str = Field(min_length=1, max_length=200)
    otp: str = Field(min_length=6, max_length=8, pattern=r"^\d+$")


class ExternalLinkStart(Strict):
    redirect_uri: str = Field(min_length=1, max_length=2048)
    current_password: str = Field(min_length=1, max_length=1024)


class ExternalProvider(BaseModel):
    name: str = Field(description="the `{provider}` of the external-login routes")
    label: str = Field(description="what a login button says")


class ExternalProviders(BaseModel):
    providers: list[ExternalProvider]


class LockedAccount(UserView):
    locked_until: datetime
    failures: int = Field(description="consecutive failed logins of the account's name")


class AccountPage(BaseModel):
    items: list[UserView]


class OpenInvitation(BaseModel):
    """An invitation to a group nobody accepted yet, as the service desk sees it."""

    group_id: str
    group_name: str
    user_id: str
    user_name: str
    admin: StrictBool
    invited_by: str
    invited_by_name: str
    invited_at: datetime


class AuthorizationStart(BaseModel):
    authorization_url: str
    state: str
