"""The study store API's request and answer models (their names are the OpenAPI schemas'
names): studies, reports, reference numbers and break the glass (`studies`), forwarding
(`forwarding_api`), the access barrier (`internal`), downloads and the viewer."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.envelope import EventEnvelope

# --- studies.py -------------------------------------------------------------------------


def aware_utc(value: datetime | None) -> datetime | None:
    """The moment in UTC (a naive one taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AccessView(BaseModel):
    """The caller's access decision for a study, and why."""

    images: bool
    report: Literal["none", "read", "write"]
    download: bool
    anonymized: bool
    via: str | None
    reason: str
    bucket_id: str | None = None
    group_id: str | None = None
    reference_id: str | None = None
    valid_until: datetime | None = None

    @classmethod
    def of(cls, d: AccessDecision) -> AccessView:
        return cls(
            images=d.images,
            report=d.report,
            download=d.download,
            anonymized=d.anonymized,
            via=d.via,
            reason=d.reason,
            bucket_id=d.bucket_id,
            group_id=d.group_id,
            reference_id=d.reference_id,
            valid_until=d.valid_until,
        )


class StudySummary(BaseModel):
    study_uid: str
    patient_id: str | None = Field(None, description="hidden on anonymized shares")
    patient_initials: str | None = Field(None, description="hidden on anonymized shares")
    anonymized_name: str | None = Field(
        None, description="'<number> Anonymous' on anonymized shares"
    )
    description: str = ""
    study_date: date | None = None
    accession_number: str | None = None
    modalities: list[str] = []
    department_id: str | None = None
    label: str | None = None
    urgent: bool = False
    message_state: Literal["none", "unread", "read"] = "none"
    valid_until: datetime | None = None
    has_report: bool = False
    access: AccessView


class StudyList(BaseModel):
    items: list[StudySummary]
    total: int
    offset: int
    limit: int


class BucketView(BaseModel):
    bucket_id: str
    access_level: str
    label: str | None = None
    urgent: bool = False
    has_message: bool = False
    valid_until: datetime | None = None
    unlimited: bool = False
    anonymize: bool = False
    two_factor: bool = False


class StudyDetail(StudySummary):
    patient_birth_date: date | None = Field(None, description="hidden on anonymized shares")
    series_count: int = 0
    instance_count: int = 0
    report_version: int | None = None
    received_at: datetime | None = None
    buckets: list[BucketView] = []


class ReportVersion(BaseModel):
    version: int
    format: Literal["text", "pdf"]
    content_type: str
    size: int
    author_id: str
    updated_at: datetime


class ReportView(ReportVersion):
    study_uid: str
    text: str | None = Field(None, description="the report itself when it is text")
    content_url: str
    versions: list[ReportVersion] = []


class ReportText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=200_000)


class ReferenceNumberView(BaseModel):
    reference_id: str = Field(
        description="what the number goes by everywhere else (events, audit, these routes)"
    )
    reference_number: str | None = Field(
        description="the number itself, for the patient's letter (None: it cannot be opened "
        "under this deployment's `STUDYSHARE_REFERENCE_NUMBER_SECRET`)"
    )
    study_uid: str
    issued_at: datetime | None = None
    issued_by: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    complies_with_rule: bool = Field(
        description="false: breaks the department's complexity rule; flagged and unusable"
    )
    usable: bool
    revoked: bool = False
    revoked_at: datetime | None = None
    pincode_required: bool = False
    pincode_set: bool = False
    pincode_failures: int = Field(0, description="wrong pincodes entered (all time)")
    pincode_consecutive_failures: int = 0
    has_mobile: bool = False


class ReferenceNumberList(BaseModel):
    items: list[ReferenceNumberView]


class IssueReferenceNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")

    valid_from: datetime | None = None
    valid_to: datetime | None = None
    patient_mobile: str | None = Field(None, pattern=r"^\+?[0-9 ]{6,20}$")
    reference_number: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9]{4,32}$",
        description="an existing number (e.g. from the RIS); flagged if it breaks the rule",
    )

    _utc = field_validator("valid_from", "valid_to")(aware_utc)


class RegeneratedReferenceNumbers(BaseModel):
    issued: list[ReferenceNumberView]


class Pincode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pincode: str = Field(pattern=r"^[0-9]{4,8}$")


class BreakTheGlassRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=4000, description="mandatory; stored and alerted")


class BreakTheGlassResult(BaseModel):
    study_uid: str
    valid_until: datetime
    event_id: str
    access: AccessView


# --- forwarding_api.py ------------------------------------------------------------------


class ForwardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pacs_id: str = Field(min_length=1, max_length=64, description="A department of kind pacs")


class TransferView(BaseModel):
    transfer_id: str
    destination_kind: Literal["pacs", "rsw"]
    destination_id: str
    destination_name: str | None = None
    state: Literal["pending", "retrying", "forwarded", "failed"]
    attempts: int
    rounds: int
    last_error: str | None = None
    requested_by: str | None = None
    anonymized: bool = False
    requested_at: datetime
    updated_at: datetime


class PacsView(BaseModel):
    pacs_id: str
    name: str
    ae_title: str


class RswStatus(BaseModel):
    department_id: str
    transfer: TransferView | None = None


# --- internal.py ------------------------------------------------------------------------


class BarrierIn(BaseModel):
    events: list[EventEnvelope] = Field(min_length=1, max_length=5000)
    timeout_s: float = Field(default=12.0, gt=0, le=60)


class BarrierOut(BaseModel):
    confirmed: bool
    followers: int
    behind: list[str]
    waited_ms: float


# --- downloads.py -----------------------------------------------------------------------


class UploadedTogether(BaseModel):
    study_uid: str
    study_uids: list[str]


# --- viewer.py --------------------------------------------------------------------------


class ViewerToken(BaseModel):
    token: str = Field(description="bearer token for the DICOMweb read routes of this study")
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the token scheme
    expires_in: int = Field(description="seconds until the token ends (ask again before)")
    study_uid: str = Field(
        description="the study's UID as the caller sees it (remapped on anonymized shares)"
    )
    dicomweb_root: str = "/dicomweb"
