"""Events of the share service (`share.events`): buckets, grants, two-factor, revocation."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from studyshare.contracts.events.base import DomainEvent, registry

AccessLevel = Literal["images", "images_report_read", "images_report_write"]
RecipientKind = Literal["user", "group", "department", "email"]
Language = Literal["en", "nl", "fr", "de"]


class RecipientRef(BaseModel):
    """A recipient of a bucket. `email` is only set for a new recipient invited by mail."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    recipient_id: str
    kind: RecipientKind
    email: str | None = None
    language: str | None = None


class Label(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    text: str = Field(min_length=1, max_length=100)
    scope: Literal["user", "group"] = "user"


def _date_only(value: Any) -> Any:
    """A date chosen without a time is written `YYYY-MM-DD` and nothing else."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a date without a time is written YYYY-MM-DD")
    return value


ValidUntil = Annotated[
    AwareDatetime | Annotated[date, BeforeValidator(_date_only)] | None,
    Field(
        description="a moment with its UTC offset, or a date (YYYY-MM-DD) chosen without a "
        "time: access then ends at the end of that day in the sending department's time zone",
    ),
]


class ShareOptions(BaseModel):
    """What a share grants and how it is sent, as the sender asks for it. Declared once, here:
    the share API's request takes these fields (a share-again may override each), the command
    and the domain's request carry them, `StudyShared` stores them as decided (a date became a
    moment, a default a value) and every view of a bucket shows them, to its recipients too."""

    access_level: AccessLevel
    language: Language | None = Field(
        default=None, description="the e-mail's; by default the recipients' (majority)"
    )
    valid_until: ValidUntil = None
    unlimited: bool = False
    anonymize: bool = False
    allow_further_sharing: bool = False
    allow_download: bool = False
    two_factor: bool | None = Field(default=None, description="by default the sender's last")
    send_mail: bool | None = Field(default=None, description="by default the sender's last")
    urgent: bool = False
    label: Label | None = None
    message: str | None = Field(default=None, max_length=4000)


class ShareParameters(ShareOptions):
    """The options, and what only the sender and the study's administrators see: the reason,
    and the sender's confirmations (the patient's consent, HIPAA)."""

    reason: str = Field(default="", max_length=2000)
    patient_agreed: bool = False
    hipaa_confirmed: bool | None = None

    def parameters(self) -> dict[str, Any]:
        """The values of these fields alone (the models built on this one carry more)."""
        return {name: getattr(self, name) for name in ShareParameters.model_fields}


@registry.register
class StudyShared(ShareParameters, DomainEvent):
    """A bucket was created: studies shared with recipients under one set of parameters
    (`ShareParameters`) as decided: the five fields redeclared below hold the decision (the
    language, the end of access, two-factor, the mail, the consent), no longer a request.

    v2 replaced the bare `recipient_ids` of v1 by typed `recipients` (see the upcaster below).
    """

    aggregate_type = "Bucket"
    schema_version = 2

    bucket_id: str
    study_uids: tuple[str, ...]
    recipients: tuple[RecipientRef, ...]
    sender_id: str
    sending_department_id: str | None = None
    parent_bucket_id: str | None = None
    language: str
    valid_until: datetime | None = None
    two_factor: bool = False
    send_mail: bool = True
    patient_agreed: bool = True  # a share is refused without it


@registry.upcaster("StudyShared", from_version=1)
def _study_shared_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 only knew user recipients, by id."""
    upcast = {k: v for k, v in payload.items() if k != "recipient_ids"}
    upcast["recipients"] = [
        {"recipient_id": rid, "kind": "user"} for rid in payload.get("recipient_ids", [])
    ]
    return upcast


@registry.register
class AccessRevoked(DomainEvent):
    """Access ended by a person: a recipient, a study of the bucket, or the whole bucket."""

    aggregate_type = "Bucket"

    bucket_id: str
    scope: Literal["recipient", "study", "bucket"]
    recipient_id: str | None = None
    study_uid: str | None = None
    revoked_by: str
    cascade_from: str | None = None


@registry.register
class OTPFailed(DomainEvent):
    """A wrong one-time password was entered for a two-factor bucket."""

    aggregate_type = "Bucket"

    bucket_id: str
    recipient_id: str
    consecutive_failures: int


@registry.register
class BucketLocked(DomainEvent):
    """The fifth wrong OTP in a row locked the bucket for every recipient."""

    aggregate_type = "Bucket"

    bucket_id: str
    recipient_id: str
    failed_attempts: int
    sending_department_id: str | None = None


@registry.register
class OTPRequested(DomainEvent):
    """A recipient asked for a code; notify sends it by SMS. The code is sealed for notify.
    It voids every earlier code of that recipient on the bucket. `requested_at` counts the
    requests against the rate limit (unset on events stored before it was added)."""

    aggregate_type = "Bucket"

    bucket_id: str
    recipient_id: str
    otp_id: str
    sealed_code: str
    expires_at: datetime
    language: str = "en"
    requested_at: datetime | None = None


@registry.register
class OTPVerified(DomainEvent):
    """The recipient proved the second factor; their access through this bucket is open
    until `verified_until`, in the login session that entered the code (`session_id`, the
    token's `sid`) only. Events stored before `session_id` was added open no session."""

    aggregate_type = "Bucket"

    bucket_id: str
    recipient_id: str
    otp_id: str
    verified_until: datetime
    session_id: str | None = None


@registry.register
class BucketUnlocked(DomainEvent):
    aggregate_type = "Bucket"

    bucket_id: str
    unlocked_by: str
    unlocked_as: Literal["service_desk", "department_admin"]


@registry.register
class BucketExpired(DomainEvent):
    """`valid_until` passed: access had already ended by itself; this makes it visible."""

    aggregate_type = "Bucket"

    bucket_id: str
    valid_until: datetime


@registry.register
class InvitationAccepted(DomainEvent):
    """A new recipient invited by e-mail accepted the invitation with their account (the
    one registered with that address): from now on `user_id` holds the bucket as its
    recipient `recipient_id` (`email:<address>`), and revoking that recipient revokes them."""

    aggregate_type = "Bucket"

    bucket_id: str
    recipient_id: str
    user_id: str


@registry.register
class FavoriteAdded(DomainEvent):
    aggregate_type = "Favorites"

    owner_id: str
    favorite_id: str
    recipient: RecipientRef


@registry.register
class FavoriteRemoved(DomainEvent):
    aggregate_type = "Favorites"

    owner_id: str
    favorite_id: str


@registry.register
class LabelAdded(DomainEvent):
    """A label to pick from in the share dialog ("Add a label"), of a user (seen only by that
    user) or of a group (seen by the group's members). Aggregate `labels_<owner_id>`."""

    aggregate_type = "Labels"

    owner_kind: Literal["user", "group"]
    owner_id: str
    label_id: str
    text: str
    added_by: str


@registry.register
class LabelRemoved(DomainEvent):
    aggregate_type = "Labels"

    owner_kind: Literal["user", "group"]
    owner_id: str
    label_id: str
    removed_by: str


@registry.register
class SharePreferencesRemembered(DomainEvent):
    """The sender's last two-factor and send-mail choices, defaults for the next share."""

    aggregate_type = "SharePreferences"

    owner_id: str
    two_factor: bool
    send_mail: bool
