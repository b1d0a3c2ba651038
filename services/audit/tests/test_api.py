"""Integration tests of the audit API on the real database (points 1, 2, 3, 6, 7, 8)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from datetime import timedelta

from fhir.resources.bundle import Bundle

from .scenario import T0


def iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def test_study_logging_lists_every_event_touching_the_study_paginated(api, test_tokens):
    client, _story, ids, _ = api
    auditor = test_tokens.user("usr_auditor", "auditor")
    seen, offset = [], 0
    while offset is not None:
        r = await client.get(
            f"/api/audit/studies/{ids['uid']}/log",
            params={"limit": 5, "offset": offset},
            headers=auditor,
        )
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 5
        seen += page["items"]
        offset = page["next_offset"]
    assert len(seen) == page["total"] == len({e["id"] for e in seen})
    types = [e["event_type"] for e in seen]
    for expected in (
        "StudyReceived",
        "StudyShared",
        "StudyAccessed",
        "ReportUpdated",
        "StudyDownloaded",
        "StudyForwarded",
        "OTPFailed",
        "BucketLocked",
        "BucketUnlocked",
        "AccessRevoked",
        "BreakTheGlassUsed",
        "ReferenceNumberIssued",
        "PincodeSet",
        "PincodeFailed",
        "PatientLoginSucceeded",
        "BucketLabelChanged",
        "PatientLoginFailed",
    ):
        assert expected in types, expected
    assert "LoginFailed" not in types
    times = [e["occurred_at"] for e in seen]
    assert times == sorted(times)


async def test_study_logging_filters_by_actor_event_type_and_time_range(api, test_tokens):
    client, _, ids, _ = api
    auditor = test_tokens.user("usr_auditor", "auditor")
    url = f"/api/audit/studies/{ids['uid']}/log"
    r = await client.get(url, params={"actor": ids["alice"]}, headers=auditor)
    assert r.status_code == 200
    items = r.json()["items"]
    assert items and all(ids["alice"] in e["actors"] for e in items)
    assert {"StudyAccessed", "OTPFailed"} <= {e["event_type"] for e in items}
    r = await client.get(url, params={"event_type": ["OTPFailed", "BucketLocked"]}, headers=auditor)
    assert [e["event_type"] for e in r.json()["items"]] == ["OTPFailed"] * 5 + ["BucketLocked"]
    r = await client.get(
        url,
        params={"from": iso(T0 + timedelta(minutes=17)), "to": iso(T0 + timedelta(minutes=20))},
        headers=auditor,
    )
    assert [e["event_type"] for e in r.json()["items"]] == [
        "BucketLocked",
        "BucketUnlocked",
        "AccessRevoked",
        "BreakTheGlassUsed",
    ]
    r = await client.get(url, params={"category": "download"}, headers=auditor)
    assert [e["event_type"] for e in r.json()["items"]] == ["StudyDownloaded"]


async def test_log_per_actor_and_per_patient(api, test_tokens):
    client, _, ids, _ = api
    desk = test_tokens.user("usr_desk", "service_desk")
    r = await client.get("/api/audit/log", params={"actor": ids["alice"]}, headers=desk)
    types = {e["event_type"] for e in r.json()["items"]}
    assert "LoginFailed" in types and "StudyAccessed" in types
    r = await client.get("/api/audit/log", params={"patient_id": ids["patient"]}, headers=desk)
    page = r.json()
    assert page["total"] > 10
    assert all(ids["uid"] in e["study_uids"] or e["patient_id"] for e in page["items"])
    r = await client.get("/api/audit/log", params={"patient_id": "nobody"}, headers=desk)
    assert r.json()["total"] == 0


async def test_access_tab_lists_grants_break_the_glass_transfers_buckets_and_references(
    api, test_tokens
):
    client, _, ids, _ = api
    r = await client.get(
        f"/api/audit/studies/{ids['uid']}/access", headers=test_tokens.user("u", "auditor")
    )
    assert r.status_code == 200, r.text
    tab = r.json()
    assert tab["department_id"] == ids["dep"]
    alice = next(u for u in tab["users"] if u["recipient_id"] == ids["alice"])
    assert (alice["granted_by"], alice["state"]) == (ids["sender"], "revoked")
    assert [g["recipient_id"] for g in tab["groups"]] == [ids["group"]]
    assert tab["groups"][0]["name"] == "Practice"
    assert tab["groups"][0]["members"] == sorted([ids["bob"], ids["dave"]])
    assert tab["break_the_glass"][0]["reason"] == "emergency: patient unconscious"
    assert tab["transfers"][0]["destination_id"] == "PACS_A"
    assert {b["bucket_id"]: b["state"] for b in tab["buckets"]}[ids["bucket2"]] == "revoked"
    ref = tab["reference_numbers"][0]
    assert ref["reference_id"] == ids["ref_id"]
    assert (ref["pincode_set"], ref["pincode_failed_attempts"]) == (True, 2)
    assert ref["login_failed_attempts"] == 1, "found through the reference number"


async def test_no_answer_of_the_audit_api_holds_a_patient_reference_number(api, test_tokens):
    """With the date of birth a reference number opens the study: an auditor reads its id
    (tells two references apart) but never the number, in the log (its issue, the patient's
    logins and accesses), the Access tab, who could open it, the alerts or the exports."""
    client, _, ids, _ = api
    auditor = test_tokens.user("usr_auditor", "auditor")
    uid, number, ref_id = ids["uid"], ids["ref"], ids["ref_id"]
    r = await client.get(f"/api/audit/studies/{uid}/log", params={"limit": 500}, headers=auditor)
    assert r.status_code == 200 and number not in r.text and "sealed_number" not in r.text
    items = r.json()["items"]
    (issued,) = [e for e in items if e["event_type"] == "ReferenceNumberIssued"]
    assert issued["reference_ids"] == [ref_id] and issued["payload"]["reference_id"] == ref_id
    (by_patient,) = [e for e in items if e["payload"].get("via") == "reference_number"]
    assert by_patient["event_type"] == "StudyAccessed"
    assert by_patient["reference_ids"] == [ref_id] and by_patient["actors"] == [f"pat_{ref_id}"]
    failed = next(e for e in items if e["event_type"] == "PatientLoginFailed")
    assert failed["reference_ids"] == [ref_id], "no study uid: found through the reference id"
    r = await client.get(
        "/api/audit/log", params={"actor": f"ref:{ref_id}", "limit": 500}, headers=auditor
    )
    assert {e["event_type"] for e in r.json()["items"]} == {
        "PincodeFailed",
        "PatientLoginSucceeded",
        "PatientLoginFailed",
    }
    t = iso(T0 + timedelta(minutes=21, seconds=30))
    answers = [
        await client.get(f"/api/audit/studies/{uid}/access", headers=auditor),
        await client.get(f"/api/audit/studies/{uid}/access-at", params={"t": t}, headers=auditor),
        await client.get(
            "/api/audit/alerts",
            params={"from": iso(T0), "to": iso(T0 + timedelta(hours=2))},
            headers=auditor,
        ),
        await client.get("/api/audit/export/fhir", params={"study": uid}, headers=auditor),
        await client.get("/api/audit/export/dicom", params={"study": uid}, headers=auditor),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert number not in answer.text, answer.request.url
    (patient,) = [x for x in answers[1].json()["could_open"] if x["principal_kind"] == "patient"]
    assert (patient["principal_id"], patient["reference_id"]) == (f"ref:{ref_id}", ref_id)
    assert "reference_number" not in patient


async def test_access_at_answers_from_the_log(api, test_tokens):
    client, _, ids, _ = api
    url = f"/api/audit/studies/{ids['uid']}/access-at"
    auditor = test_tokens.user("u", "auditor")
    r = await client.get(
        url, params={"t": iso(T0 + timedelta(minutes=5, seconds=30))}, headers=auditor
    )
    assert r.status_code == 200, r.text
    rows = {(x["principal_id"], x["via"]) for x in r.json()["could_open"]}
    assert (ids["alice"], "grant") in rows and (ids["bob"], "group") in rows
    assert (ids["carol"], "department") in rows
    r = await client.get(
        url, params={"t": iso(T0 + timedelta(minutes=17, seconds=30))}, headers=auditor
    )
    assert not any(x.get("bucket_id") == ids["bucket"] for x in r.json()["could_open"])
    r = await client.get(url, params={"t": iso(T0 + timedelta(minutes=40))}, headers=auditor)
    assert (ids["admin"], "department") in {
        (x["principal_id"], x["via"]) for x in r.json()["could_open"]
    }, "assigned department admin opens the department's studies"
    r = await client.get(url, params={"t": "not-a-time"}, headers=auditor)
    assert r.status_code == 422
    naive = (T0 + timedelta(minutes=20, seconds=30)).replace(tzinfo=None).isoformat()
    r = await client.get(url, params={"t": naive}, headers=auditor)
    assert r.status_code == 200, "a time without offset is UTC"
    assert (ids["glass"], "break_the_glass") in {
        (x["principal_id"], x["via"]) for x in r.json()["could_open"]
    }


async def test_alerts_list_locks_break_the_glass_and_bursts(api, test_tokens):
    client, _, ids, _ = api
    r = await client.get(
        "/api/audit/alerts",
        params={"from": iso(T0), "to": iso(T0 + timedelta(hours=2))},
        headers=test_tokens.user("u", "auditor"),
    )
    assert r.status_code == 200, r.text
    kinds = {(a["kind"], a["key_value"]) for a in r.json()["items"]}
    assert ("bucket_locked", ids["bucket"]) in kinds
    assert ("break_the_glass", ids["glass"]) in kinds
    assert ("failed_otps", ids["bucket"]) in kinds
    assert ("failed_logins", ids["alice"]) in kinds
    assert ("failed_logins", ids["mallory_ip"]) in kinds


async def test_department_admin_sees_only_their_departments_alerts(api, test_tokens):
    client, _, ids, _ = api
    admin = test_tokens.user("usr_adm", "department_admin", admin_of=[ids["dep"]])
    r = await client.get(
        "/api/audit/alerts",
        params={"from": iso(T0), "to": iso(T0 + timedelta(hours=2))},
        headers=admin,
    )
    kinds = {a["kind"] for a in r.json()["items"]}
    assert "bucket_locked" in kinds and "failed_logins" not in kinds


async def test_exports_fhir_r5_and_dicom_xml_and_reading_is_logged_as_110101(api, test_tokens):
    client, _, ids, _ = api
    auditor = test_tokens.user("usr_auditor", "auditor")
    r = await client.get("/api/audit/export/fhir", params={"study": ids["uid"]}, headers=auditor)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(r.json())
    categories = {e.resource.category[0].coding[0].code for e in bundle.entry}
    assert {"110103", "110106", "110113", "110114", "110101"} <= categories
    r = await client.get("/api/audit/export/dicom", params={"study": ids["uid"]}, headers=auditor)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    codes = [m.find("EventIdentification/EventID").get("csd-code") for m in root]
    assert codes.count("110101") == 2, "the FHIR export and this export were both logged"
    used = [m for m in root if m.find("EventIdentification/EventID").get("csd-code") == "110101"]
    assert used[0].find("ActiveParticipant").get("UserID") == "usr_auditor"
    r = await client.get("/api/audit/reads", params={"study": ids["uid"]}, headers=auditor)
    assert [e["payload"]["route"] for e in r.json()["items"]] == [
        "/api/audit/export/fhir",
        "/api/audit/export/dicom",
        "/api/audit/reads",
    ]


async def test_concurrent_reads_are_all_logged_on_one_unbroken_chain(api, test_tokens):
    client, _, ids, _ = api
    auditor = test_tokens.user("usr_auditor", "auditor")
    responses = await asyncio.gather(
        *(client.get(f"/api/audit/studies/{ids['uid']}/log", headers=auditor) for _ in range(8))
    )
    assert all(r.status_code == 200 for r in responses)
    r = await client.get("/api/audit/verify", headers=auditor)
    report = r.json()
    assert report["ok"], report
    assert report["audit_reads"]["checked"] == 9, "eight reads and the verify itself"


async def test_only_auditors_department_admins_and_service_desk_read_the_log(api, test_tokens):
    """The study logging is theirs; the Access tab is also for those who share the study
    (`test_access_tab_for_those_who_share.py`)."""
    client, _, ids, _ = api
    url = f"/api/audit/studies/{ids['uid']}/log"
    ok = [
        test_tokens.user("a", "auditor"),
        test_tokens.user("d", "service_desk"),
        test_tokens.user("m", "department_admin", admin_of=[ids["dep"]]),
    ]
    for headers in ok:
        assert (await client.get(url, headers=headers)).status_code == 200
    r = await client.get(
        url, headers=test_tokens.user("p", "physician", department_ids=[ids["dep"]])
    )
    assert r.status_code == 403 and r.json()["rule"] == "AuditLogReadersOnly"
    r = await client.get(
        url, headers=test_tokens.user("s", "department_staff", department_ids=[ids["dep"]])
    )
    assert r.status_code == 403
    r = await client.get(url, headers=test_tokens.patient(ids["ref_id"], ids["uid"]))
    assert r.status_code == 403
    r = await client.get(
        f"/api/audit/studies/{ids['uid']}/access",
        headers=test_tokens.patient(ids["ref_id"], ids["uid"]),
    )
    assert r.status_code == 403 and r.json()["rule"] == "NotAmongThoseWhoShare"
    other = test_tokens.user("m2", "department_admin", admin_of=[ids["other_dep"]])
    r = await client.get(url, headers=other)
    assert r.status_code == 404 and r.json()["rule"] == "StudyNotInAuditLog"
    r = await client.get("/api/audit/verify", headers=other)
    assert r.status_code == 403 and r.json()["rule"] == "ChainCheckForOperatorsOnly"
    assert (await client.get(url)).status_code == 401
    r = await client.get("/api/audit/log", headers=test_tokens.user("p", "physician"))
    assert r.status_code == 403


async def test_department_admin_log_is_limited_to_their_departments_studies(api, test_tokens):
    client, _, ids, _ = api
    mine = test_tokens.user("m", "department_admin", admin_of=[ids["dep"]])
    r = await client.get("/api/audit/log", params={"actor": ids["alice"]}, headers=mine)
    items = r.json()["items"]
    assert items and all(ids["uid"] in e["study_uids"] for e in items), "no login events"
    other = test_tokens.user("m2", "department_admin", admin_of=[ids["other_dep"]])
    r = await client.get("/api/audit/log", headers=other)
    assert r.json()["total"] == 0


async def test_another_departments_admin_reads_of_a_study_what_of_an_unknown_one(api, test_tokens):
    """The log once told a department admin which studies other departments hold: 403
    `AdminOfOtherDepartment` for one of them, 404 for a UID no one ever sent."""
    client, _, ids, _ = api
    other = test_tokens.user("m2", "department_admin", admin_of=[ids["other_dep"]])
    at = "2030-01-01T00:00:00Z"
    for path, params in (("log", {}), ("access", {}), ("access-at", {"t": at})):
        answers = []
        for uid in (ids["uid"], "9.9.9"):
            r = await client.get(f"/api/audit/studies/{uid}/{path}", params=params, headers=other)
            answers.append((r.status_code, r.json()["rule"], r.json()["detail"].replace(uid, "X")))
        assert answers[0] == answers[1], (path, answers)
        assert answers[0][:2] == (404, "StudyNotInAuditLog")


async def test_unknown_study_is_404_for_auditors(api, test_tokens):
    client, *_ = api
    r = await client.get(
        "/api/audit/studies/9.9.9/access", headers=test_tokens.user("a", "auditor")
    )
    assert r.status_code == 404 and r.json()["rule"] == "StudyNotInAuditLog"


async def test_a_study_not_yet_in_the_log_is_404_for_its_admin_not_a_refusal(api, test_tokens):
    """Right after an upload the audit log may not know the study's department yet; its admin
    is told so (404), not that the study belongs to another department (403)."""
    client, _, ids, _ = api
    admin = test_tokens.user("m", "department_admin", admin_of=[ids["dep"]])
    for path in ("log", "access"):
        r = await client.get(f"/api/audit/studies/9.9.9/{path}", headers=admin)
        assert r.status_code == 404 and r.json()["rule"] == "StudyNotInAuditLog", r.text
    r = await client.get("/api/audit/studies/9.9.9/log", headers=test_tokens.user("p", "physician"))
    assert r.status_code == 403 and r.json()["rule"] == "AuditLogReadersOnly"
