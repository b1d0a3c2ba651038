"""Response models of the audit API (precise, so the OpenAPI can be fuzzed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class LogEntry(BaseModel):
    """One registration in the study logging (an event, or a read of the audit log)."""

    id: str
    seq: int
    kind: Literal["event", "audit_log_used"] = "event"
    event_id: str
    event_type: str
    aggregate_type: str | None = None
    aggregate_id: str | None = None
    aggregate_version: int | None = None
    occurred_at: datetime
    actor: dict[str, Any] = Field(default_factory=dict)
    actors: list[str] = Field(default_factory=list)
    category: str
    outcome: Literal["success", "failure"]
    alert: str | None = None
    summary: str
    study_uids: list[str] = Field(default_factory=list)
    reference_ids: list[str] = Field(
        default_factory=list,
        description="the patient reference numbers the entry names, by their reference ids",
    )
    patient_id: str | None = None
    correlation_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> LogEntry:
        return cls.model_validate({**doc, "id": str(doc["_id"])})


class LogPage(BaseModel):
    items: list[LogEntry]
    total: int
    offset: int
    limit: int
    next_offset: int | None = None


class Grant(BaseModel):
    """A line of the Users / Groups section: who has access, which type, until when, by whom."""

    recipient_id: str
    kind: str
    email: str | None = None
    access_level: str | None = None
    valid_until: datetime | None = None
    unlimited: bool = False
    granted_at: datetime | None = None
    granted_by: str | None = None
    bucket_id: str
    two_factor: bool = False
    anonymize: bool = False
    state: Literal["active", "locked", "revoked", "expired"]
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    name: str | None = Field(default=None, description="the group's name (groups only)")
    members: list[str] | None = Field(default=None, description="the group's members now")


class BreakTheGlass(BaseModel):
    user_id: str | None = None
    reason: str | None = None
    department_id: str | None = None
    at: datetime
    valid_until: datetime | None = None


class Transfer(BaseModel):
    transfer_id: str | None = None
    destination_kind: str | None = None
    destination_id: str | None = None
    status: Literal["done", "failed", "retrying"]
    attempts: int = 0
    reason: str | None = None
    requested_by: str | None = None
    instance_count: int | None = None
    at: datetime


class Download(BaseModel):
    user_id: str | None = None
    reference_id: str | None = Field(
        default=None, description="a patient's download: the reference number's id"
    )
    via: str | None = None
    bucket_id: str | None = None
    anonymized: bool = False
    at: datetime


class BucketRecipient(BaseModel):
    recipient_id: str
    kind: str
    email: str | None = None
    state: Literal["active", "locked", "revoked", "expired"]
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    otp_failures: int = 0
    verified_until: datetime | None = None


class Bucket(BaseModel):
    bucket_id: str
    parent_bucket_id: str | None = None
    sender_id: str | None = None
    sending_department_id: str | None = None
    study_uids: list[str] = Field(default_factory=list)
    access_level: str | None = None
    reason: str | None = None
    label: str | None = None
    valid_until: datetime | None = None
    unlimited: bool = False
    anonymize: bool = False
    two_factor: bool = False
    allow_download: bool = False
    allow_further_sharing: bool = False
    granted_at: datetime | None = None
    state: Literal["active", "locked", "revoked", "expired"]
    recipients: list[BucketRecipient]
    failed_attempts: int = 0
    locked_at: datetime | None = None
    unlocked_at: datetime | None = None
    unlocked_by: str | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    study_removed_at: datetime | None = None
    study_removed_by: str | None = None
    expired_at: datetime | None = None


class ReferenceNumber(BaseModel):
    """A patient reference number, named by its reference id (the log never holds the number:
    with the date of birth it opens the study)."""

    reference_id: str
    issued_at: datetime | None = None
    issued_by: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    complies_with_rule: bool = True
    pincode_required: bool = False
    pincode_set: bool = False
    pincode_set_at: datetime | None = None
    pincode_set_by: str | None = None
    pincode_failed_attempts: int = 0
    login_failed_attempts: int = 0
    logins: int = 0
    last_login_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    state: Literal[
        "active", "revoked", "non_compliant", "not_yet_valid", "expired", "awaiting_pincode"
    ]


class ExamOwner(BaseModel):
    """The "Exam owner" heading of the Access tab."""

    user_id: str
    name: str | None = None


class AccessOverview(BaseModel):
    """The manual's Access tab, answered from the log, as the reader's view allows: `full`
    (auditors, the service desk, the department's admins), `owner` and `department` (every
    grant; no reference numbers), `sender` (the buckets the reader sent)."""

    study_uid: str
    view: Literal["full", "owner", "department", "sender"] = "full"
    department_id: str | None = None
    owner_id: str | None = None
    exam_owner: ExamOwner | None = None
    received_at: datetime | None = None
    as_of: datetime
    users: list[Grant]
    groups: list[Grant]
    departments: list[Grant]
    break_the_glass: list[BreakTheGlass]
    transfers: list[Transfer]
    rsw: list[Transfer]
    downloads: list[Download]
    buckets: list[Bucket]
    reference_numbers: list[ReferenceNumber]


class AccessAtRow(BaseModel):
    """Someone who could open the study at the moment asked, and through which grant."""

    principal_kind: Literal["user", "group", "department", "patient", "role"]
    principal_id: str
    via: str
    through: str | None = None
    bucket_id: str | None = None
    reference_id: str | None = Field(
        default=None, description="a patient's reference number, by its reference id"
    )
    access_level: str | None = None
    granted_at: datetime | None = None
    granted_by: str | None = None
    valid_until: datetime | None = None
    two_factor: bool | None = None
    reason: str | None = None


class AccessAt(BaseModel):
    study_uid: str
    at: datetime
    events_considered: int
    could_open: list[AccessAtRow]


class Alert(BaseModel):
    kind: str
    at: datetime
    until: datetime
    count: int
    key: str | None = None
    key_value: str | None = None
    study_uids: list[str]
    entry_ids: list[str]
    summary: str


class Alerts(BaseModel):
    since: datetime
    until: datetime
    items: list[Alert]


class ChainIssue(BaseModel):
    seq: int
    kind: Literal["changed", "removed", "reordered"]
    detail: str
    entry_id: str | None = None


class ChainReport(BaseModel):
    ok: bool
    checked: int
    problems: list[ChainIssue]
    head_seq: int = Field(description="last seq the chain head records")
    head_chain_hash: str | None = Field(
        default=None, description="the head's chain hash: keep it elsewhere to anchor the log"
    )


class VerifyReport(BaseModel):
    ok: bool
    study_log: ChainReport
    audit_reads: ChainReport


class Opening(BaseModel):
    """One registration of access to the patient's study: when, who, what kind."""

    at: datetime
    kind: str = Field(description="view, metadata, instances, report_read, download, ...")
    via: str | None = Field(default=None, description="the path: grant, group, department...")
    by_patient: bool = Field(description="opened with a reference number (the patient)")
    user_name: str | None = None
    department_names: list[str] = Field(default_factory=list)
    group_name: str | None = None
    count: int = 1


class Openings(BaseModel):
    """Who opened the study of the patient's token, and when (GDPR right of access)."""

    study_uid: str
    as_of: datetime
    items: list[Opening]
