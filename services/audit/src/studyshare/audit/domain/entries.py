"""Study logging: turn any event envelope into one log entry (pure, no I/O).

An entry keeps the whole (upcast, secret-free) payload so the log shows every event, also the
types this code does not know yet, plus the fields an auditor filters on: the studies it
touches, who did it, who or what it mentions, its category and outcome.

A patient reference number is a credential (with the date of birth it opens a study): an entry
names it only by its reference id (`studyshare.plumbing.reference_ids`), never the number, even
sealed. One exception is accepted: an event written before reference ids (v1) named the number
itself, and its upcast keeps that number as its id (and its stream, `ref_<number>`), so the
entries of such old events still show it.

Everything in an entry is derived from the envelope and from earlier events of the *same
aggregate* (the bucket -> studies map of a bucket), so replaying the topics in another
interleaving of partitions yields the very same entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_jsonable_python

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry

# Never stored, whatever event carries them: secrets, and personal data the log does not need.
DROPPED_KEYS = frozenset(
    {
        "sealed_code",
        "code",
        "otp",
        "pincode",
        "pincode_hash",
        "sealed_pincode",
        "legacy_pincode_hash",
        "password",
        "password_hash",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "totp_secret",
        "mobile",
        "patient_mobile",
        "patient_birth_date",
        "patient_initials",
        "patient_name",
        "date_of_birth",
        # a patient reference number (a credential), however it travels: sealed for the study
        # store, kept by an upcast v1 event, or in clear in an event no upcaster knows
        "sealed_number",
        "legacy_reference_number",
        "reference_number",
    }
)

# Payload fields naming the person who did something (besides the envelope's actor).
DOER_FIELDS = (
    "sender_id",
    "revoked_by",
    "unlocked_by",
    "author_id",
    "set_by",
    "issued_by",
    "requested_by",
    "approved_by",
    "changed_by",
    "registered_by",
    "created_by",
    "added_by",
    "removed_by",
    "assigned_by",
    "deactivated_by",
)
# Events whose `user_id` / `recipient_id` is the doer rather than the subject.
USER_IS_DOER = frozenset(
    {
        "StudyAccessed",
        "StudyFirstOpened",
        "StudyAccessRefused",
        "StudyDownloaded",
        "BreakTheGlassUsed",
        "LoginSucceeded",
        "LoginFailed",
        "LoggedOut",
        "GroupMembershipConfirmed",
    }
)
RECIPIENT_IS_DOER = frozenset({"OTPFailed", "OTPVerified", "OTPRequested", "BucketLocked"})

CATEGORY = {
    "StudyShared": "share",
    "InvitationAccepted": "share",
    "StudyFirstOpened": "message_read",
    "AccessRevoked": "revocation",
    "OTPRequested": "otp",
    "OTPVerified": "otp",
    "OTPFailed": "otp_failure",
    "BucketLocked": "lock",
    "BucketUnlocked": "unlock",
    "BucketExpired": "expiry",
    "StudyReceived": "study",
    "StudyInstancesAdded": "study",
    "StudyMessageStored": "study",
    "ReportUpdated": "report_write",
    "StudyDownloaded": "download",
    "StudyAccessRefused": "access_refused",
    "BreakTheGlassUsed": "break_the_glass",
    "ReferenceNumberIssued": "reference_number",
    "ReferenceNumberRevoked": "revocation",
    "PincodeSet": "reference_number",
    "PincodeFailed": "pincode_failure",
    "StudyForwarded": "forward",
    "StudyForwardFailed": "forward",
    "PatientLoginSucceeded": "patient_login",
    "PatientLoginFailed": "patient_login",
    "PatientOTPIssued": "patient_login",
    "LoginSucceeded": "login",
    "LoginFailed": "login",
    "LoggedOut": "login",
    "AccountLocked": "lock",
}
ACCESS_CATEGORY = {
    "view": "view",
    "metadata": "view",
    "instances": "view",
    "rendered": "view",
    "report_read": "report_read",
    "report_write": "report_write",
    "download": "download",
    "forward": "forward",
    "search": "search",
    "list": "search",
}
FAILURES = frozenset(
    {
        "OTPFailed",
        "PincodeFailed",
        "PatientLoginFailed",
        "LoginFailed",
        "StudyForwardFailed",
        "NotificationFailed",
        "StudyAccessRefused",
    }
)
# Security alerts raised by a single event (bursts are found over many, see `alerts`).
ALERTS = {
    "BucketLocked": "bucket_locked",
    "BreakTheGlassUsed": "break_the_glass",
    "AccountLocked": "account_locked",
}


def utc(value: datetime) -> datetime:
    """MongoDB may hand back naive datetimes: they are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def scrub(value: Any) -> Any:
    """The value without secret or unneeded personal fields, at any depth."""
    if isinstance(value, Mapping):
        return {k: scrub(v) for k, v in value.items() if k not in DROPPED_KEYS}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def category_of(event_type: str, payload: Mapping[str, Any]) -> str:
    if event_type == "StudyAccessed":
        return ACCESS_CATEGORY.get(str(payload.get("action")), "view")
    if event_type in CATEGORY:
        return CATEGORY[event_type]
    if event_type.startswith(("User", "Group", "Department", "TOTP")):
        return "identity"
    if event_type.startswith("Notification"):
        return "notification"
    return "other"


def study_uids_of(
    envelope: EventEnvelope, payload: Mapping[str, Any], bucket_studies: Sequence[str] = ()
) -> list[str]:
    """`payload.study_uid`, each of `payload.study_uids`, else the studies of the bucket."""
    uids: set[str] = set()
    if isinstance(payload.get("study_uid"), str):
        uids.add(payload["study_uid"])
    if isinstance(payload.get("study_uids"), list):
        uids.update(u for u in payload["study_uids"] if isinstance(u, str))
    if not uids and envelope.aggregate_type == "Bucket":
        uids.update(bucket_studies)
    return sorted(uids)


def _ids(payload: Mapping[str, Any]) -> set[str]:
    """Every identifier a payload mentions (`*_id`, `*_ids`, recipients)."""
    found: set[str] = set()
    for key, value in payload.items():
        if key.endswith("_id") and isinstance(value, str):
            found.add(value)
        elif key.endswith("_ids") and isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
        elif key in DOER_FIELDS and isinstance(value, str):
            found.add(value)
        elif key == "recipients" and isinstance(value, list):
            found.update(
                r["recipient_id"]
                for r in value
                if isinstance(r, Mapping) and isinstance(r.get("recipient_id"), str)
            )
    return found


def actors_of(envelope: EventEnvelope, payload: Mapping[str, Any]) -> list[str]:
    """Who did it: the envelope's actor (and on whose behalf) and the payload's doer fields."""
    actors = {a for a in (envelope.actor.id, envelope.actor.on_behalf_of) if a}
    actors.update(payload[f] for f in DOER_FIELDS if isinstance(payload.get(f), str))
    if envelope.event_type in USER_IS_DOER and isinstance(payload.get("user_id"), str):
        actors.add(payload["user_id"])
    if envelope.event_type in RECIPIENT_IS_DOER and isinstance(payload.get("recipient_id"), str):
        actors.add(payload["recipient_id"])
    if isinstance(payload.get("reference_id"), str) and envelope.aggregate_type == "Patient":
        actors.add(f"ref:{payload['reference_id']}")
    return sorted(actors)


def summary_of(event_type: str, payload: Mapping[str, Any], actors: Sequence[str]) -> str:
    """One line an auditor reads in the study logging (never a secret, never a name)."""
    who = actors[0] if actors else "system"
    p = payload
    match event_type:
        case "StudyShared":
            until = "unlimited" if p.get("unlimited") else f"until {p.get('valid_until')}"
            return (
                f"{p.get('sender_id')} shared {len(p.get('study_uids') or [])} study(ies) with "
                f"{len(p.get('recipients') or [])} recipient(s), {p.get('access_level')}, {until}"
            )
        case "InvitationAccepted":
            return f"{p.get('user_id')} accepted the invitation sent to {p.get('recipient_id')}"
        case "AccessRevoked":
            target = p.get("recipient_id") or p.get("study_uid") or p.get("bucket_id")
            return f"{p.get('revoked_by')} revoked {p.get('scope')} access ({target})"
        case "StudyAccessed":
            count = p.get("count", 1)
            return f"{who} {p.get('action')} via {p.get('via')}" + (
                f" ({count}x)" if count and count > 1 else ""
            )
        case "StudyAccessRefused":
            count = p.get("count", 1)
            return f"{who} refused {p.get('action')} ({p.get('rule')})" + (
                f" ({count}x)" if count and count > 1 else ""
            )
        case "OTPFailed":
            return (
                f"wrong OTP by {p.get('recipient_id')} ({p.get('consecutive_failures')} in a row)"
            )
        case "BucketLocked":
            return f"bucket locked after {p.get('failed_attempts')} wrong OTPs"
        case "BreakTheGlassUsed":
            return f"{p.get('user_id')} broke the glass: {p.get('reason')}"
        case "LoginFailed" | "PatientLoginFailed":
            return f"login failed ({p.get('reason')})"
        case "StudyForwarded" | "StudyForwardFailed":
            outcome = "failed" if event_type == "StudyForwardFailed" else "done"
            return f"transfer to {p.get('destination_kind')} {p.get('destination_id')} {outcome}"
    return f"{event_type} by {who}"


def build_entry(envelope: EventEnvelope, bucket_studies: Sequence[str] = ()) -> dict[str, Any]:
    """The log entry of one event (without its chain fields)."""
    try:
        envelope = registry.upcast(envelope)
    except LookupError:
        pass  # no upcaster (yet): keep the payload as it was written
    payload = scrub(to_jsonable_python(envelope.payload))
    actors = actors_of(envelope, payload)
    refs = sorted({payload["reference_id"]} if isinstance(payload.get("reference_id"), str) else ())
    entry = {
        "_id": f"{envelope.aggregate_id}:{envelope.aggregate_version}",
        "kind": "event",
        "event_id": str(envelope.event_id),
        "event_type": envelope.event_type,
        "schema_version": envelope.schema_version,
        "aggregate_type": envelope.aggregate_type,
        "aggregate_id": envelope.aggregate_id,
        "aggregate_version": envelope.aggregate_version,
        "occurred_at": utc(envelope.occurred_at),
        "actor": to_jsonable_python(envelope.actor.model_dump(exclude_none=True)),
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
        "payload": payload,
        "category": category_of(envelope.event_type, payload),
        "outcome": "failure" if envelope.event_type in FAILURES else "success",
        "alert": ALERTS.get(envelope.event_type),
        "summary": summary_of(envelope.event_type, payload, actors),
        "study_uids": study_uids_of(envelope, payload, bucket_studies),
        "actors": actors,
        "subjects": sorted(_ids(payload) | set(actors)),
        "patient_id": payload.get("patient_id")
        if isinstance(payload.get("patient_id"), str)
        else None,
        "stream": envelope.aggregate_id,
    }
    # Sparse lookup fields, present only where they mean something (cheap sparse indexes).
    if refs:
        entry["reference_ids"] = refs
    departments = departments_of(envelope.event_type, payload)
    if departments:
        entry["departments"] = departments
    return entry


def departments_of(event_type: str, payload: Mapping[str, Any]) -> list[str]:
    """Departments a user's identity event names (to expand department grants into members)."""
    if event_type in ("UserRegistered", "UserRolesChanged"):
        return sorted({*payload.get("department_ids", []), *payload.get("admin_of", [])})
    if event_type == "DepartmentAdminAssigned" and isinstance(payload.get("department_id"), str):
        return [payload["department_id"]]
    return []
