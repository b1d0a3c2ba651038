"""Unit tests of the exports (point 6): FHIR R5 AuditEvent and DICOM PS3.15 A.5 XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fhir.resources.bundle import Bundle

from studyshare.audit.domain.entries import build_entry
from studyshare.audit.domain.exports import audit_code, dicom_export, fhir_bundle

from .scenario import full_story


def study_entries():
    story, ids = full_story()
    buckets = {ids["bucket"]: [ids["uid"]], ids["bucket2"]: [ids["uid"]]}
    entries = [
        build_entry(e, buckets.get(e.aggregate_id, []) if e.aggregate_type == "Bucket" else [])
        for e in story.events
    ]
    return [e for e in entries if ids["uid"] in e["study_uids"]], ids


def test_events_map_to_the_dicom_audit_event_ids():
    entries, _ = study_entries()
    codes = {e["event_type"]: audit_code(e) for e in entries}
    assert codes["StudyAccessed"].event_id == "110103"
    assert codes["StudyDownloaded"].event_id == "110106"
    assert codes["StudyForwarded"].event_id == "110106"
    assert codes["BreakTheGlassUsed"].event_id == "110113"
    assert codes["BreakTheGlassUsed"].event_type == "110127"
    assert codes["BucketLocked"].event_id == "110113"
    assert codes["OTPFailed"].event_id == "110114" and codes["OTPFailed"].outcome == 4
    assert codes["PatientLoginSucceeded"].event_id == "110114"
    assert audit_code({"kind": "audit_log_used"}).event_id == "110101"


def test_fhir_bundle_validates_as_r5_audit_events():
    entries, ids = study_entries()
    bundle = fhir_bundle(entries, "studyshare-audit", {ids["uid"]: ids["patient"]})
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "collection"
    events = [e.resource for e in parsed.entry]
    assert {e.get_resource_type() for e in events} == {"AuditEvent"}
    btg = next(
        e
        for e in events
        if e.category[0].coding[0].code == "110113" and e.code.coding[0].code == "110127"
    )
    assert btg.agent[0].who.identifier.value == ids["glass"]
    assert any(ent.what.identifier.value == f"urn:oid:{ids['uid']}" for ent in btg.entity)
    assert any(ent.what.identifier.value == ids["patient"] for ent in btg.entity)
    failed = [e for e in events if e.outcome.code.code == "4"]
    assert failed, "OTP and pincode failures carry a minor-failure outcome"


def test_dicom_xml_has_one_audit_message_per_audited_event():
    entries, ids = study_entries()
    xml = dicom_export(entries, "studyshare-audit", {ids["uid"]: ids["patient"]})
    root = ET.fromstring(xml)
    messages = root.findall("AuditMessage")
    assert len(messages) == sum(1 for e in entries if audit_code(e) is not None)
    codes = [m.find("EventIdentification/EventID").get("csd-code") for m in messages]
    assert {"110103", "110106", "110113", "110114"} <= set(codes)
    access = messages[codes.index("110103")]
    assert access.find("EventIdentification").get("EventActionCode") == "R"
    assert access.find("ActiveParticipant").get("UserID") == ids["alice"]
    assert access.find("AuditSourceIdentification").get("AuditSourceID") == "studyshare-audit"
    objects = access.findall("ParticipantObjectIdentification")
    assert (ids["uid"], "2", "3") in [
        (
            o.get("ParticipantObjectID"),
            o.get("ParticipantObjectTypeCode"),
            o.get("ParticipantObjectTypeCodeRole"),
        )
        for o in objects
    ]
    assert any(o.get("ParticipantObjectID") == ids["patient"] for o in objects)
