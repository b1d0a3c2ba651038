"""The access read model as documents: how share, identity and study events fold into them.

One collection (`access_decisions.g<N>.docs`) holds every document the access model needs,
`_id = "<kind>:<key>"`:

| kind | key | from |
|---|---|---|
| study | study uid | StudyReceived, StudyInstancesAdded, StudyMessageStored, ReportUpdated |
| bucket | bucket id | StudyShared, AccessRevoked, BucketLocked/Unlocked, BucketExpired, |
|  |  | InvitationAccepted (the account holding an e-mail recipient's grant) |
| otp | bucket id, recipient id, session id | OTPVerified (the code opens its session only) |
| group | group id | GroupCreated, GroupMemberAdded/Removed, GroupMembershipLapsed/Confirmed |
| user | user id | UserRegistered, UserRolesChanged, UserDeactivated |
| department | department id | DepartmentCreated, DepartmentPolicySet |
| btg | user id, study uid | BreakTheGlassUsed |
| ref | reference number | ReferenceNumberIssued/Revoked, PincodeSet, PincodeFailed |
| read | user id, study uid | StudyFirstOpened (at once), StudyAccessed (view, metadata): read |

A bucket document also lists `holder_ids` (its recipients and the accounts that accepted
them), and an anonymized one `remapped_study_uids` (the UIDs its recipients see, `remap`, keyed with
the anonymization secret the projection holds): both are looked up by index.

Each document carries `seq`, a number increasing with every write of the projection, so the
API processes follow the read model with one indexed query (`seq > last seen`). The fold is
idempotent per document (`_v`: last version applied per aggregate), so the API can fold its own
fresh events into memory ahead of the worker and re-fold them over an older worker copy.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, MutableMapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from studyshare.contracts.anonymized import bucket_key, remap_uid
from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import identity as ie
from studyshare.contracts.events import registry
from studyshare.contracts.events import share as se
from studyshare.contracts.events import study as st
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

ACCESS_PROJECTION = "access_decisions"
Doc = dict[str, Any]
Docs = MutableMapping[str, Doc]

# Opening the study (details, or the viewer loading its metadata) reads its message.
READ_ACTIONS = ("view", "metadata")
RELEVANT = {
    "StudyShared",
    "AccessRevoked",
    "BucketLocked",
    "BucketUnlocked",
    "BucketExpired",
    "InvitationAccepted",
    "OTPVerified",
    "GroupCreated",
    "GroupMemberAdded",
    "GroupMemberRemoved",
    "GroupMembershipLapsed",
    "GroupMembershipConfirmed",
    "UserRegistered",
    "UserRolesChanged",
    "UserDeactivated",
    "DepartmentCreated",
    "DepartmentPolicySet",
    "StudyReceived",
    "StudyInstancesAdded",
    "StudyMessageStored",
    "ReportUpdated",
    "BreakTheGlassUsed",
    "ReferenceNumberIssued",
    "ReferenceNumberRevoked",
    "PincodeSet",
    "PincodeFailed",
    "StudyAccessed",
    "StudyFirstOpened",
}


def doc_id_for(envelope: EventEnvelope) -> str | None:
    """The one document an event changes (None: the access model ignores it)."""
    if envelope.event_type not in RELEVANT:
        return None
    p = registry.upcast(envelope).payload  # an older version may name a field otherwise
    match envelope.event_type:
        case (
            "StudyShared"
            | "AccessRevoked"
            | "BucketLocked"
            | "BucketUnlocked"
            | "BucketExpired"
            | "InvitationAccepted"
        ):
            return f"bucket:{p['bucket_id']}"
        case "OTPVerified":
            return f"otp:{p['bucket_id']}:{p['recipient_id']}:{p.get('session_id') or ''}"
        case (
            "GroupCreated"
            | "GroupMemberAdded"
            | "GroupMemberRemoved"
            | "GroupMembershipLapsed"
            | "GroupMembershipConfirmed"
        ):
            return f"group:{p['group_id']}"
        case "UserRegistered" | "UserRolesChanged" | "UserDeactivated":
            return f"user:{p['user_id']}"
        case "DepartmentCreated" | "DepartmentPolicySet":
            return f"department:{p['department_id']}"
        case "StudyReceived" | "StudyInstancesAdded" | "StudyMessageStored" | "ReportUpdated":
            return f"study:{p['study_uid']}"
        case "BreakTheGlassUsed":
            return f"btg:{p['user_id']}:{p['study_uid']}"
        case "ReferenceNumberIssued" | "ReferenceNumberRevoked" | "PincodeSet" | "PincodeFailed":
            return f"ref:{p['reference_id']}"
        case "StudyAccessed":
            if p.get("action") in READ_ACTIONS and p.get("user_id"):
                return f"read:{p['user_id']}:{p['study_uid']}"
        case "StudyFirstOpened":
            return f"read:{p['user_id']}:{p['study_uid']}"
    return None


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(_utc(a), _utc(b))


def _already_applied(doc: Doc, envelope: EventEnvelope) -> bool:
    """Remember the newest version applied per aggregate in `_v`, kept sorted by aggregate id:
    a document that follows two aggregates (a reference number and its patient) comes out the
    same whichever of their partitions a consumer read first."""
    for pair in doc.get("_v", []):
        if pair[0] == envelope.aggregate_id:
            if envelope.aggregate_version <= pair[1]:
                return True
            pair[1] = envelope.aggregate_version
            return False
    bisect.insort(doc.setdefault("_v", []), [envelope.aggregate_id, envelope.aggregate_version])
    return False


def fold(docs: Docs, envelope: EventEnvelope) -> str | None:
    """Apply one event to the document it changes (created when missing); return its id, or
    None when the event changes nothing here (irrelevant, or already applied)."""
    try:
        doc_id = doc_id_for(envelope)
        payload = registry.payload(envelope) if doc_id is not None else None
    except (KeyError, TypeError, ValidationError):
        # A malformed event must not stall every later revocation behind it: skip, loudly.
        log.error(
            "access_read_model.undecodable_event",
            event_type=envelope.event_type,
            event_id=str(envelope.event_id),
            aggregate_id=envelope.aggregate_id,
        )
        return None
    if doc_id is None:
        return None
    kind = doc_id.split(":", 1)[0]
    doc = docs.get(doc_id)
    if doc is None:
        doc = {"_id": doc_id, "kind": kind}
    if _already_applied(doc, envelope):
        return None
    handler = _FOLDS.get(envelope.event_type)
    if payload is None or handler is None:
        return None
    handler(doc, payload, envelope)
    if kind == "bucket":  # for "the buckets shared with X" (indexed)
        doc["holder_ids"] = sorted(names_of(doc))
    docs[doc_id] = doc
    return doc_id


def names_of(bucket: Doc) -> set[str]:
    """Everyone a bucket document names: its recipients and the accounts holding them."""
    return {
        *(r["recipient_id"] for r in bucket.get("recipients", ())),
        *(bucket.get("accepted") or {}).values(),
    }


def remap(doc: Doc, anonymization_secret: str) -> None:
    """An anonymized bucket's document lists the study UIDs its recipients see."""
    if doc.get("kind") == "bucket" and doc.get("anonymize"):
        key = bucket_key(anonymization_secret, doc.get("bucket_id") or "")
        doc["remapped_study_uids"] = [remap_uid(key, u) for u in doc.get("study_uids", ())]


def _study_shared(doc: Doc, e: se.StudyShared, env: EventEnvelope) -> None:
    doc.update(
        bucket_id=e.bucket_id,
        study_uids=list(e.study_uids),
        recipients=[{"recipient_id": r.recipient_id, "kind": r.kind} for r in e.recipients],
        sender_id=e.sender_id,
        sending_department_id=e.sending_department_id,
        parent_bucket_id=e.parent_bucket_id,
        access_level=e.access_level,
        valid_until=_utc(e.valid_until),
        unlimited=e.unlimited,
        anonymize=e.anonymize,
        allow_download=e.allow_download,
        two_factor=e.two_factor,
        urgent=e.urgent,
        label=e.label.text if e.label else None,
        has_message=bool(e.message),
        shared_at=env.occurred_at,
    )
    for key, empty in (
        ("removed_study_uids", []),
        ("revoked_recipient_ids", []),
        ("revoked", False),
        ("locked", False),
        ("expired", False),
    ):
        doc.setdefault(key, empty)


def _access_revoked(doc: Doc, e: se.AccessRevoked, env: EventEnvelope) -> None:
    doc.setdefault("bucket_id", e.bucket_id)
    if e.scope == "bucket":
        doc["revoked"] = True
    elif e.scope == "study" and e.study_uid:
        doc["removed_study_uids"] = sorted({*doc.get("removed_study_uids", []), e.study_uid})
    elif e.scope == "recipient" and e.recipient_id:
        doc["revoked_recipient_ids"] = sorted(
            {*doc.get("revoked_recipient_ids", []), e.recipient_id}
        )


def _invitation_accepted(doc: Doc, e: se.InvitationAccepted, env: EventEnvelope) -> None:
    """The account that accepted an invitation by e-mail holds the e-mail recipient's grant."""
    doc.setdefault("bucket_id", e.bucket_id)
    doc["accepted"] = {**doc.get("accepted", {}), e.recipient_id: e.user_id}


def _bucket_locked(doc: Doc, e: se.BucketLocked, env: EventEnvelope) -> None:
    doc.setdefault("bucket_id", e.bucket_id)
    doc["locked"] = True


def _bucket_unlocked(doc: Doc, e: se.BucketUnlocked, env: EventEnvelope) -> None:
    doc.setdefault("bucket_id", e.bucket_id)
    doc["locked"] = False


def _bucket_expired(doc: Doc, e: se.BucketExpired, env: EventEnvelope) -> None:
    doc.setdefault("bucket_id", e.bucket_id)
    doc["expired"] = True


def _otp_verified(doc: Doc, e: se.OTPVerified, env: EventEnvelope) -> None:
    doc.update(bucket_id=e.bucket_id, recipient_id=e.recipient_id, session_id=e.session_id)
    doc["verified_until"] = _later(doc.get("verified_until"), _utc(e.verified_until))


def _group_created(doc: Doc, e: ie.GroupCreated, env: EventEnvelope) -> None:
    members = {*doc.get("member_ids", []), *e.member_ids, *e.admin_ids, e.primary_contact_id}
    doc.update(
        group_id=e.group_id,
        name=e.name,
        primary_contact_id=e.primary_contact_id,
        admin_ids=sorted({*doc.get("admin_ids", []), *e.admin_ids}),
        member_ids=sorted(members),
    )


def _group_member_added(doc: Doc, e: ie.GroupMemberAdded, env: EventEnvelope) -> None:
    doc.setdefault("group_id", e.group_id)
    doc["member_ids"] = sorted({*doc.get("member_ids", []), e.user_id})
    if e.admin:
        doc["admin_ids"] = sorted({*doc.get("admin_ids", []), e.user_id})


def _group_member_removed(doc: Doc, e: ie.GroupMemberRemoved, env: EventEnvelope) -> None:
    doc.setdefault("group_id", e.group_id)
    doc["member_ids"] = sorted(set(doc.get("member_ids", [])) - {e.user_id})
    doc["admin_ids"] = sorted(set(doc.get("admin_ids", [])) - {e.user_id})
    doc["lapsed_ids"] = sorted(set(doc.get("lapsed_ids", [])) - {e.user_id})


def _group_membership_lapsed(doc: Doc, e: ie.GroupMembershipLapsed, env: EventEnvelope) -> None:
    """Unconfirmed past the grace period: the membership gives no access until confirmed."""
    doc.setdefault("group_id", e.group_id)
    doc["lapsed_ids"] = sorted({*doc.get("lapsed_ids", []), e.user_id})


def _group_membership_confirmed(
    doc: Doc, e: ie.GroupMembershipConfirmed, env: EventEnvelope
) -> None:
    doc.setdefault("group_id", e.group_id)
    doc["lapsed_ids"] = sorted(set(doc.get("lapsed_ids", [])) - {e.user_id})


def _user_registered(doc: Doc, e: ie.UserRegistered, env: EventEnvelope) -> None:
    doc.update(
        user_id=e.user_id,
        roles=list(e.roles),
        department_ids=list(e.department_ids),
        admin_of=list(e.admin_of),
    )
    doc.setdefault("deactivated", False)


def _user_roles_changed(doc: Doc, e: ie.UserRolesChanged, env: EventEnvelope) -> None:
    doc.update(
        user_id=e.user_id,
        roles=list(e.roles),
        department_ids=list(e.department_ids),
        admin_of=list(e.admin_of),
    )
    doc.setdefault("deactivated", False)


def _user_deactivated(doc: Doc, e: ie.UserDeactivated, env: EventEnvelope) -> None:
    doc.setdefault("user_id", e.user_id)
    doc["deactivated"] = True


def _department_created(doc: Doc, e: ie.DepartmentCreated, env: EventEnvelope) -> None:
    doc.update(
        department_id=e.department_id,
        name=e.name,
        department_kind=e.kind,
        country=e.country,
        institution_id=e.institution_id,
    )


def _department_policy_set(doc: Doc, e: ie.DepartmentPolicySet, env: EventEnvelope) -> None:
    doc.update(
        department_id=e.department_id,
        reference_number_rule=e.reference_number_rule.model_dump(),
        payment_required=e.payment_required,
        patient_otp_required=e.patient_otp_required,
        break_the_glass=e.break_the_glass,
        # None: the deployment's defaults (settings) decide
        patient_report_access=e.patient_report_access,
        patient_download_allowed=e.patient_download_allowed,
        reference_number_validity_days=e.reference_number_validity_days,
        reference_numbers_on_arrival=e.reference_numbers_on_arrival,
    )


def _study_received(doc: Doc, e: st.StudyReceived, env: EventEnvelope) -> None:
    doc.update(
        study_uid=e.study_uid,
        department_id=e.department_id,
        owner_id=e.owner_id,
        upload_batch_id=e.upload_batch_id,
        patient_id=e.patient_id,
        patient_initials=e.patient_initials,
        patient_birth_date=_iso(e.patient_birth_date),
        description=e.description,
        study_date=_iso(e.study_date),
        accession_number=e.accession_number,
        modalities=sorted({*doc.get("modalities", []), *e.modalities}),
        series_count=max(e.series_count, doc.get("series_count", 0)),
        instance_count=e.instance_count + doc.get("added_instances", 0),
        received_at=env.occurred_at,
        received_via=e.received_via,
    )


def _study_instances_added(doc: Doc, e: st.StudyInstancesAdded, env: EventEnvelope) -> None:
    doc.setdefault("study_uid", e.study_uid)
    doc["added_instances"] = doc.get("added_instances", 0) + e.instance_count
    doc["instance_count"] = doc.get("instance_count", 0) + e.instance_count


def _study_message_stored(doc: Doc, e: st.StudyMessageStored, env: EventEnvelope) -> None:
    """A share message is one more series of one instance (a text SR) in the study."""
    doc.setdefault("study_uid", e.study_uid)
    doc["series_count"] = doc.get("series_count", 0) + 1
    doc["added_instances"] = doc.get("added_instances", 0) + 1
    doc["instance_count"] = doc.get("instance_count", 0) + 1


def _report_updated(doc: Doc, e: st.ReportUpdated, env: EventEnvelope) -> None:
    doc.setdefault("study_uid", e.study_uid)
    doc["report_version"] = max(doc.get("report_version", 0), e.report_version)
    doc["report_format"] = e.format


def _break_the_glass_used(doc: Doc, e: st.BreakTheGlassUsed, env: EventEnvelope) -> None:
    doc.update(user_id=e.user_id, study_uid=e.study_uid)
    doc["valid_until"] = _later(doc.get("valid_until"), _utc(e.valid_until))
    doc["count"] = doc.get("count", 0) + 1


def _reference_number_issued(doc: Doc, e: st.ReferenceNumberIssued, env: EventEnvelope) -> None:
    doc.update(
        reference_id=e.reference_id,
        number_shape=e.number_shape.model_dump(),
        sealed_number=e.sealed_number,
        legacy_number=e.legacy_reference_number,
        study_uid=e.study_uid,
        department_id=e.department_id,
        valid_from=_utc(e.valid_from),
        valid_to=_utc(e.valid_to),
        complies_with_rule=e.complies_with_rule,
        pincode_required=e.pincode_required,
        has_mobile=bool(e.patient_mobile),
        issued_by=e.issued_by,
        issued_at=env.occurred_at,
    )
    for key, empty in (("revoked", False), ("pincode_set", False), ("pincode_failures", 0)):
        doc.setdefault(key, empty)


def _reference_number_revoked(doc: Doc, e: st.ReferenceNumberRevoked, env: EventEnvelope) -> None:
    doc.update(reference_id=e.reference_id, study_uid=e.study_uid, revoked=True)
    doc["revoked_at"] = env.occurred_at
    doc["revoked_by"] = e.revoked_by


def _pincode_set(doc: Doc, e: st.PincodeSet, env: EventEnvelope) -> None:
    doc.setdefault("reference_id", e.reference_id)
    doc["pincode_set"] = True
    doc["pincode_set_at"] = env.occurred_at


def _pincode_failed(doc: Doc, e: ie.PincodeFailed, env: EventEnvelope) -> None:
    doc.setdefault("reference_id", e.reference_id)
    doc["pincode_failures"] = doc.get("pincode_failures", 0) + 1
    doc["pincode_consecutive_failures"] = e.failed_attempts


def _study_opened(doc: Doc, e: st.StudyAccessed | st.StudyFirstOpened, env: EventEnvelope) -> None:
    doc.update(user_id=e.user_id, study_uid=e.study_uid)
    doc["read_at"] = _later(doc.get("read_at"), env.occurred_at)
    # StudyAccess / StudyOpening aggregates have one event each: no versions to remember.
    doc["_v"] = []


_FOLDS: dict[str, Callable[[Doc, Any, EventEnvelope], None]] = {
    "StudyShared": _study_shared,
    "AccessRevoked": _access_revoked,
    "BucketLocked": _bucket_locked,
    "BucketUnlocked": _bucket_unlocked,
    "BucketExpired": _bucket_expired,
    "InvitationAccepted": _invitation_accepted,
    "OTPVerified": _otp_verified,
    "GroupCreated": _group_created,
    "GroupMemberAdded": _group_member_added,
    "GroupMemberRemoved": _group_member_removed,
    "GroupMembershipLapsed": _group_membership_lapsed,
    "GroupMembershipConfirmed": _group_membership_confirmed,
    "UserRegistered": _user_registered,
    "UserRolesChanged": _user_roles_changed,
    "UserDeactivated": _user_deactivated,
    "DepartmentCreated": _department_created,
    "DepartmentPolicySet": _department_policy_set,
    "StudyReceived": _study_received,
    "StudyInstancesAdded": _study_instances_added,
    "StudyMessageStored": _study_message_stored,
    "ReportUpdated": _report_updated,
    "BreakTheGlassUsed": _break_the_glass_used,
    "ReferenceNumberIssued": _reference_number_issued,
    "ReferenceNumberRevoked": _reference_number_revoked,
    "PincodeSet": _pincode_set,
    "PincodeFailed": _pincode_failed,
    "StudyAccessed": _study_opened,
    "StudyFirstOpened": _study_opened,
}
