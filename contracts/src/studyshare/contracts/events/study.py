"""Events of the study store (`study.events`): studies, reports, access, reference numbers,
transfers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from studyshare.contracts.events.base import DomainEvent, registry, renamed

AccessPath = Literal[
    "department", "owner", "grant", "group", "reference_number", "break_the_glass", "service_desk"
]
AccessAction = Literal[
    "view",
    "metadata",
    "instances",
    "rendered",
    "report_read",
    "report_write",
    "download",
    "forward",
    "search",
    "list",
]


@registry.register
class StudyReceived(DomainEvent):
    """A study arrived (STOW-RS or C-STORE) and belongs to a sending department.

    `patient_initials` is all of the name that leaves the study store (for the share mail).
    """

    aggregate_type = "Study"

    study_uid: str
    department_id: str | None = None
    owner_id: str | None = None
    upload_batch_id: str | None = None
    patient_id: str | None = None
    patient_initials: str = ""
    patient_birth_date: date | None = None
    description: str = ""
    study_date: date | None = None
    accession_number: str | None = None
    modalities: tuple[str, ...] = ()
    series_count: int = 0
    instance_count: int = 0
    received_via: Literal["stow-rs", "c-store", "message"] = "stow-rs"


@registry.register
class StudyInstancesAdded(DomainEvent):
    """More instances of a study already known arrived."""

    aggregate_type = "Study"

    study_uid: str
    series_uids: tuple[str, ...]
    instance_count: int


@registry.register
class ReportUpdated(DomainEvent):
    """A report was attached or written (its text stays in the study store)."""

    aggregate_type = "Study"

    study_uid: str
    report_version: int
    format: Literal["text", "pdf"]
    author_id: str


@registry.register
class StudyMessageStored(DomainEvent):
    """A share message was stored with the study as its own series."""

    aggregate_type = "Study"

    study_uid: str
    bucket_id: str
    series_uid: str


@registry.register
class StudyAccessed(DomainEvent):
    """A registration of access to an exam (coalesced per actor, study and action per minute).

    Aggregate: a `StudyAccess` record of its own, so hot reads never contend on the study.

    v2 names a patient's reference number by its id (`studyshare.plumbing.reference_ids`); v1
    carried the number itself.
    """

    aggregate_type = "StudyAccess"
    schema_version = 2

    study_uid: str
    action: AccessAction
    via: AccessPath
    user_id: str | None = None
    reference_id: str | None = None
    bucket_id: str | None = None
    group_id: str | None = None
    anonymized: bool = False
    count: int = 1


@registry.register
class StudyFirstOpened(DomainEvent):
    """A user opened a study shared with them (images or metadata, through a bucket) for the
    first time. Appended at once, not batched like the minute's `StudyAccessed` (which still
    counts the access): the sender's message turns read within a second.

    Aggregate: a `StudyOpening` of its own per user, bucket and study (the id is derived from
    them, at version 1), so however many processes see the first open, one event is stored.
    """

    aggregate_type = "StudyOpening"

    study_uid: str
    user_id: str
    bucket_id: str


@registry.register
class StudyAccessRefused(DomainEvent):
    """An access to an exam that was refused, named by the rule that refused it (coalesced like
    `StudyAccessed`: per actor, study, action and rule per window, `count` refusals).

    Aggregate: a `StudyAccess` record of its own, like `StudyAccessed`.
    """

    aggregate_type = "StudyAccess"
    schema_version = 2  # v2: `reference_id`, as `StudyAccessed`

    study_uid: str
    action: AccessAction
    rule: str
    user_id: str | None = None
    reference_id: str | None = None
    count: int = 1


@registry.register
class StudyDownloaded(DomainEvent):
    aggregate_type = "StudyAccess"
    schema_version = 2  # v2: `reference_id`, as `StudyAccessed`

    study_uid: str
    via: AccessPath
    user_id: str | None = None
    reference_id: str | None = None
    bucket_id: str | None = None
    anonymized: bool = False


@registry.register
class BreakTheGlassUsed(DomainEvent):
    """A user opened a study without a grant, giving a reason: always a security alert.

    Aggregate: a `BreakTheGlass` record of its own (`btg_<random>`, one event), so unlocking
    never contends with writes on the study's own stream.
    """

    aggregate_type = "BreakTheGlass"

    study_uid: str
    user_id: str
    reason: str
    department_id: str | None = None
    valid_until: datetime


class ReferenceNumberShape(BaseModel):
    """What a department's complexity rule asks of a number, without the number: its length
    and the kinds of characters it holds (`studyshare.access_policy.reference.complies`)."""

    model_config = ConfigDict(frozen=True)

    length: int
    letters: bool
    digits: bool
    plain: bool  # ASCII letters and digits only

    @classmethod
    def of(cls, number: str) -> ReferenceNumberShape:
        return cls(
            length=len(number),
            letters=any(c.isalpha() for c in number),
            digits=any(c.isdigit() for c in number),
            plain=number.isascii() and number.isalnum(),
        )


@registry.register
class ReferenceNumberIssued(DomainEvent):
    """A patient reference number for a study. `complies_with_rule` false: flagged, unusable.

    The number is a credential: it travels only sealed (`sealed_number`, which the study store
    opens for its Access tab); everyone names it by `reference_id`, its keyed hash
    (`studyshare.plumbing.reference_ids`), which is also the aggregate's (`ref_<reference_id>`),
    and checks a rule made stricter later on its `number_shape`.
    Identity needs `patient_birth_date` and `patient_mobile` to run the patient login.

    v1 carried the number in clear, and its stream was `ref_<number>`: the upcaster keeps that
    number as the id (so the stream's events still agree) and as `legacy_reference_number`.
    """

    aggregate_type = "ReferenceNumber"
    schema_version = 2

    reference_id: str
    number_shape: ReferenceNumberShape
    sealed_number: str | None = None
    #: read from upcast v1 events only; never written
    legacy_reference_number: str | None = Field(default=None, exclude=True)
    study_uid: str
    department_id: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    complies_with_rule: bool = True
    patient_birth_date: date | None = None
    patient_mobile: str | None = None
    pincode_required: bool = False
    issued_by: str | None = None


@registry.upcaster("ReferenceNumberIssued", from_version=1)
def _reference_number_issued_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    upcast = {k: v for k, v in payload.items() if k != "reference_number"}
    upcast["reference_id"] = payload["reference_number"]
    upcast["legacy_reference_number"] = payload["reference_number"]
    upcast["number_shape"] = ReferenceNumberShape.of(payload["reference_number"]).model_dump()
    return upcast


@registry.register
class ReferenceNumberRevoked(DomainEvent):
    aggregate_type = "ReferenceNumber"
    schema_version = 2  # v2: `reference_id`, as `ReferenceNumberIssued`

    reference_id: str
    study_uid: str
    revoked_by: str


@registry.register
class PincodeSet(DomainEvent):
    """A pincode handed to the patient after payment, sealed to identity.

    `sealed_pincode` is a libsodium sealed box to identity's pincode key
    (`studyshare.plumbing.sealing.seal_pincode`, bound to the reference id): only identity
    opens it, and keeps an argon2 hash of its own. Neither the pincode nor anything to test a
    guess against travels.

    v1 carried the pincode's argon2 `pincode_hash`, which anyone reading the topic could attack
    offline; the upcaster below keeps it as `legacy_pincode_hash` so that a replay still knows
    those pincodes. New events never carry it. v3 names the number by its `reference_id`.
    """

    aggregate_type = "ReferenceNumber"
    schema_version = 3

    reference_id: str
    study_uid: str
    sealed_pincode: str | None = None
    #: read from upcast v1 events only; never written
    legacy_pincode_hash: str | None = Field(default=None, exclude=True)
    set_by: str


@registry.upcaster("PincodeSet", from_version=1)
def _pincode_set_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1's hash is kept under its legacy name; nothing was sealed then."""
    upcast = {k: v for k, v in payload.items() if k != "pincode_hash"}
    upcast["legacy_pincode_hash"] = payload.get("pincode_hash")
    return upcast


registry.upcaster("PincodeSet", from_version=2)(renamed("reference_number", "reference_id"))
registry.upcaster("ReferenceNumberRevoked", from_version=1)(
    renamed("reference_number", "reference_id")
)
for _access_event in ("StudyAccessed", "StudyAccessRefused", "StudyDownloaded"):
    registry.upcaster(_access_event, from_version=1)(renamed("reference_number", "reference_id"))


@registry.register
class StudyForwardRequested(DomainEvent):
    """A transfer of a study to a PACS or to the regional health network (RSW) was asked for:
    by a user (`trigger="manual"`), by a share with a PACS department (`"share"`), on arrival
    for the department's RSW (`"arrival"`), or again after a failure (`"resend"`).

    The study store's worker performs it by C-STORE, retrying with backoff; the outcome is
    `StudyForwarded` or `StudyForwardFailed` events on the same `Transfer` (`trf_...`).
    `anonymous_number` is set when the copy must be anonymized (an anonymized share).
    `include_report` says whether report instances (SR, encapsulated PDF/CDA) go too: only
    when the forwarder may read the report (never for images-only or anonymized access);
    events stored before it existed sent them (`True`).
    """

    aggregate_type = "Transfer"

    transfer_id: str
    study_uid: str
    destination_kind: Literal["pacs", "rsw"]
    destination_id: str
    trigger: Literal["manual", "share", "arrival", "resend"] = "manual"
    requested_by: str | None = None
    bucket_id: str | None = None
    anonymous_number: str | None = None
    include_report: bool = True


@registry.register
class StudyForwarded(DomainEvent):
    """A transfer to a PACS or to the regional health network (RSW) succeeded."""

    aggregate_type = "Transfer"

    transfer_id: str
    study_uid: str
    destination_kind: Literal["pacs", "rsw"]
    destination_id: str
    attempts: int
    requested_by: str | None = None
    instance_count: int = 0


@registry.register
class StudyForwardFailed(DomainEvent):
    aggregate_type = "Transfer"

    transfer_id: str
    study_uid: str
    destination_kind: Literal["pacs", "rsw"]
    destination_id: str
    attempts: int
    reason: str
    final: bool = False
    requested_by: str | None = None
