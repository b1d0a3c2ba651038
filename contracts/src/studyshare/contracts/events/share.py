"""Events of the share service (`share.events`): buckets, grants, two-factor, revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from studyshare.contracts.events.base import DomainEvent, registry

AccessLevel = Literal["images", "images_report_read", "images_report_write"]
RecipientKind = Literal["user", "group", "department", "email"]


class RecipientRef(BaseModel):
    """A recipient of a bucket. `email` is only set for a new recipient invited by mail."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    recipient_id: str
    kind: RecipientKind
    email: str | None = None
    language: str | None = None


class Label(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    text: str
    scope: Literal["user", "group"] = "user"


@registry.register
class StudyShared(DomainEvent):
    """A bucket was created: studies shared with recipients under one set of parameters.

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
    access_level: AccessLevel
    reason: str
    language: str
    valid_until: datetime | None = None
    unlimited: bool = False
    anonymize: bool = False
    allow_further_sharing: bool = False
    allow_download: bool = False
    two_factor: bool = False
    send_mail: bool = True
    urgent: bool = False
    label: Label | None = None
    message: str | None = None
    patient_agreed: bool = True
    hipaa_confirmed: bool | None = None


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
