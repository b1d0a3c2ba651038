"""Exports of log entries as DICOM PS3.15 A.5 audit messages and FHIR R5 AuditEvents."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from studyshare.audit.domain.access import when

DCM = "http://dicom.nema.org/resources/ontology/DCM"
FHIR_OUTCOME = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"
FHIR_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
FHIR_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
EVENT_TYPE_SYSTEM = "urn:studyshare:event-type"
ACTOR_SYSTEM = "urn:studyshare:actor"

EVENT_IDS = {
    "110101": "Audit Log Used",
    "110103": "DICOM Instances Accessed",
    "110106": "Export",
    "110107": "Import",
    "110113": "Security Alert",
    "110114": "User Authentication",
}
EVENT_TYPES = {
    "110122": "Login",
    "110123": "Logout",
    "110127": "Emergency Override Started",
    "110135": "Object Security Attributes Changed",
    "110137": "User Security Attributes Changed",
}


@dataclass(frozen=True)
class AuditCode:
    """What an entry is in DICOM terms: EventID, action, optional EventTypeCode, outcome."""

    event_id: str
    action: str
    event_type: str | None = None
    outcome: int = 0

    @property
    def severity(self) -> str:
        if self.event_id == "110113" or self.outcome >= 8:
            return "alert"
        return "warning" if self.outcome else "informational"


_SECURITY_CHANGES = {
    "StudyShared",
    "AccessRevoked",
    "BucketLocked",
    "BucketUnlocked",
    "BucketExpired",
    "ReferenceNumberIssued",
    "ReferenceNumberRevoked",
    "PincodeSet",
}
_LOGIN_OK = {"LoginSucceeded", "PatientLoginSucceeded", "OTPVerified"}
_LOGIN_FAILED = {"LoginFailed", "PatientLoginFailed", "OTPFailed", "PincodeFailed"}


def audit_code(entry: Mapping[str, Any]) -> AuditCode | None:
    """The DICOM audit event of a log entry, or None when the entry has no audit meaning."""
    t, p = entry.get("event_type"), entry.get("payload") or {}
    if entry.get("kind") == "audit_log_used":
        return AuditCode("110101", "R")
    if t == "StudyAccessed":
        action = p.get("action")
        if action in ("download", "forward"):
            return AuditCode("110106", "R")
        return AuditCode("110103", "U" if action == "report_write" else "R")
    if t == "ReportUpdated":
        return AuditCode("110103", "U")
    if t == "StudyDownloaded":
        return AuditCode("110106", "R")
    if t == "StudyForwarded":
        return AuditCode("110106", "R")
    if t == "StudyForwardFailed":
        return AuditCode("110106", "R", outcome=8 if p.get("final") else 4)
    if t in ("StudyReceived", "StudyInstancesAdded"):
        return AuditCode("110107", "C")
    if t == "BreakTheGlassUsed":
        return AuditCode("110113", "E", "110127")
    if t == "AccountLocked":
        return AuditCode("110113", "E", "110137")
    if t in _SECURITY_CHANGES:
        return AuditCode("110113", "E", "110135", outcome=4 if t == "BucketLocked" else 0)
    if t in _LOGIN_OK:
        return AuditCode("110114", "E", "110122")
    if t in _LOGIN_FAILED:
        return AuditCode("110114", "E", "110122", outcome=4)
    if t == "LoggedOut":
        return AuditCode("110114", "E", "110123")
    return None


def _stamp(value: Any) -> str:
    moment = when(value) or datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _patients_of(entry: Mapping[str, Any], patients: Mapping[str, str | None]) -> list[str]:
    """The patient ids of the entry's studies (from StudyReceived)."""
    found = {patients.get(uid) for uid in entry.get("study_uids") or []}
    return sorted(p for p in found if p)


def _actors(entry: Mapping[str, Any]) -> list[str]:
    return list(entry.get("actors") or []) or [str(entry.get("actor", {}).get("id") or "system")]


# -- DICOM PS3.15 A.5 -------------------------------------------------------------------------
def dicom_message(
    entry: Mapping[str, Any], source_id: str, patients: Mapping[str, str | None]
) -> ET.Element | None:
    """One `<AuditMessage>` (DICOM PS3.15 A.5.1), or None for an entry without audit meaning."""
    code = audit_code(entry)
    if code is None:
        return None
    message = ET.Element("AuditMessage")
    ident = ET.SubElement(
        message,
        "EventIdentification",
        EventActionCode=code.action,
        EventDateTime=_stamp(entry.get("occurred_at")),
        EventOutcomeIndicator=str(code.outcome),
    )
    ET.SubElement(
        ident,
        "EventID",
        {
            "csd-code": code.event_id,
            "codeSystemName": "DCM",
            "originalText": EVENT_IDS[code.event_id],
        },
    )
    if code.event_type:
        ET.SubElement(
            ident,
            "EventTypeCode",
            {
                "csd-code": code.event_type,
                "codeSystemName": "DCM",
                "originalText": EVENT_TYPES[code.event_type],
            },
        )
    if code.outcome:
        ET.SubElement(ident, "EventOutcomeDescription").text = str(entry.get("summary", ""))
    ip = entry.get("actor", {}).get("ip") or (entry.get("payload") or {}).get("source_ip")
    for actor in _actors(entry):
        attrs = {"UserID": actor, "UserIsRequestor": "true"}
        if ip:
            attrs |= {"NetworkAccessPointID": str(ip), "NetworkAccessPointTypeCode": "2"}
        ET.SubElement(message, "ActiveParticipant", attrs)
    source = ET.SubElement(message, "AuditSourceIdentification", AuditSourceID=source_id)
    ET.SubElement(
        source,
        "AuditSourceTypeCode",
        {
            "csd-code": "4",
            "codeSystemName": "RFC-3881",
            "originalText": "Application Server Process",
        },
    )
    for uid in entry.get("study_uids") or []:
        obj = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            ParticipantObjectID=uid,
            ParticipantObjectTypeCode="2",
            ParticipantObjectTypeCodeRole="3",
        )
        ET.SubElement(
            obj,
            "ParticipantObjectIDTypeCode",
            {"csd-code": "110180", "codeSystemName": "DCM", "originalText": "Study Instance UID"},
        )
    for patient in _patients_of(entry, patients):
        obj = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            ParticipantObjectID=patient,
            ParticipantObjectTypeCode="1",
            ParticipantObjectTypeCodeRole="1",
        )
        ET.SubElement(
            obj,
            "ParticipantObjectIDTypeCode",
            {"csd-code": "2", "codeSystemName": "RFC-3881", "originalText": "Patient Number"},
        )
    if code.event_id == "110101":
        obj = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            ParticipantObjectID=str((entry.get("payload") or {}).get("route", "")),
            ParticipantObjectTypeCode="2",
            ParticipantObjectTypeCodeRole="13",
        )
        ET.SubElement(
            obj,
            "ParticipantObjectIDTypeCode",
            {"csd-code": "12", "codeSystemName": "RFC-3881", "originalText": "URI"},
        )
    return message


def dicom_export(
    entries: Iterable[Mapping[str, Any]], source_id: str, patients: Mapping[str, str | None]
) -> bytes:
    """`<AuditMessages>` holding one PS3.15 A.5 `<AuditMessage>` per entry with audit meaning."""
    root = ET.Element("AuditMessages")
    for entry in entries:
        message = dicom_message(entry, source_id, patients)
        if message is not None:
            root.append(message)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# -- FHIR R5 AuditEvent -----------------------------------------------------------------------
def fhir_audit_event(
    entry: Mapping[str, Any], source_id: str, patients: Mapping[str, str | None]
) -> dict[str, Any] | None:
    """A FHIR R5 AuditEvent resource (validated by the `fhir.resources` model)."""
    from fhir.resources.auditevent import AuditEvent

    code = audit_code(entry)
    if code is None:
        return None
    codings = [{"system": DCM, "code": code.event_id, "display": EVENT_IDS[code.event_id]}]
    type_codings = [
        {"system": EVENT_TYPE_SYSTEM, "code": str(entry.get("event_type") or entry.get("kind"))}
    ]
    if code.event_type:
        type_codings.insert(
            0, {"system": DCM, "code": code.event_type, "display": EVENT_TYPES[code.event_type]}
        )
    entities: list[dict[str, Any]] = [
        {
            "what": {
                "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"},
                "display": "Study Instance UID",
            },
            "role": {"coding": [{"system": FHIR_OBJECT_ROLE, "code": "3", "display": "Report"}]},
        }
        for uid in entry.get("study_uids") or []
    ]
    entities += [
        {
            "what": {"identifier": {"system": "urn:studyshare:patient-id", "value": patient}},
            "role": {"coding": [{"system": FHIR_OBJECT_ROLE, "code": "1", "display": "Patient"}]},
        }
        for patient in _patients_of(entry, patients)
    ]
    ip = entry.get("actor", {}).get("ip") or (entry.get("payload") or {}).get("source_ip")
    resource = {
        "resourceType": "AuditEvent",
        "id": str(entry.get("event_id") or entry["_id"]),
        "category": [{"coding": codings}],
        "code": {"coding": type_codings, "text": str(entry.get("summary", ""))},
        "action": code.action,
        "severity": code.severity,
        "occurredDateTime": _stamp(entry.get("occurred_at")),
        "recorded": _stamp(entry.get("occurred_at")),
        "outcome": {
            "code": {"system": FHIR_OUTCOME, "code": str(code.outcome)},
            **({"detail": [{"text": str(entry.get("summary", ""))}]} if code.outcome else {}),
        },
        "agent": [
            {
                "who": {"identifier": {"system": ACTOR_SYSTEM, "value": actor}},
                "requestor": True,
                **({"networkString": str(ip)} if ip else {}),
            }
            for actor in _actors(entry)
        ],
        "source": {
            "observer": {"display": source_id},
            "type": [{"coding": [{"system": FHIR_SOURCE_TYPE, "code": "4"}]}],
        },
        **({"entity": entities} if entities else {}),
    }
    return AuditEvent.model_validate(resource).model_dump(mode="json", exclude_none=True)


def fhir_bundle(
    entries: Iterable[Mapping[str, Any]], source_id: str, patients: Mapping[str, str | None]
) -> dict[str, Any]:
    """A FHIR R5 `collection` Bundle of AuditEvents, validated as a whole."""
    from fhir.resources.bundle import Bundle

    resources = [r for e in entries if (r := fhir_audit_event(e, source_id, patients))]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _stamp(datetime.now(UTC)),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)
