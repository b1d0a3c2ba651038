"""The /api/studies routes of the access half against the real database."""

from __future__ import annotations

from datetime import timedelta

from studyshare.contracts.events.identity import (
    DepartmentCreated,
    DepartmentPolicySet,
    GroupCreated,
    PincodeFailed,
    ReferenceNumberRule,
)
from studyshare.contracts.events.share import AccessRevoked
from studyshare.plumbing.sealing import DEV_PINCODE_PRIVATE_KEY, DEV_PRIVATE_KEY, open_pincode

from .conftest import now

A, B, C, D = (f"1.2.826.0.1.3680043.10.{n}" for n in (11, 12, 13, 14))


async def _events(h, event_type: str) -> list[dict]:
    return await h.db.events.find({"event_type": event_type}).to_list(None)


# -- overview --------------------------------------------------------------------------------


async def test_overview_lists_department_shared_group_and_colleague_studies(harness):
    h = harness
    await h.study(A, department_id="dep_rad", study_date=__import__("datetime").date(2026, 1, 1))
    await h.study(B, department_id=None, owner_id="usr_colleague", modalities=("MR",))
    await h.study(C, department_id="dep_other", description="knee MR")
    await h.study(D, department_id="dep_other")
    await h.share(
        "bkt_me",
        [C],
        [("usr_doc", "user")],
        label={"text": "follow-up"},
        urgent=True,
        message="please look at the knee",
    )
    await h.share("bkt_grp", [D], [("grp_team", "group")])
    await h.project(
        h.events(
            GroupCreated(
                group_id="grp_team",
                name="Practice",
                created_by="u",
                primary_contact_id="usr_doc",
                member_ids=("usr_colleague",),
            ),
            "grp_team",
        )
    )
    await h.sync()
    doctor = h.user("usr_doc", "physician", department_ids=["dep_rad"])
    r = await h.http.get("/api/studies", headers=doctor)
    assert r.status_code == 200, r.text
    body = r.json()
    by_uid = {s["study_uid"]: s for s in body["items"]}
    assert set(by_uid) == {A, B, C, D} and body["total"] == 4
    assert by_uid[A]["access"]["via"] == "department"
    assert by_uid[B]["access"]["via"] == "group", "a colleague's own study"
    assert by_uid[C]["access"]["via"] == "grant" and by_uid[C]["label"] == "follow-up"
    assert by_uid[C]["urgent"] and by_uid[C]["message_state"] == "unread"
    assert by_uid[C]["valid_until"] is not None
    assert by_uid[D]["access"]["via"] == "group" and by_uid[D]["access"]["group_id"] == "grp_team"

    stranger = h.user("usr_nobody", "physician")
    assert (await h.http.get("/api/studies", headers=stranger)).json()["total"] == 0

    # opening the study reads the message
    assert (await h.http.get(f"/api/studies/{C}", headers=doctor)).status_code == 200
    again = (await h.http.get("/api/studies", params={"q": "knee"}, headers=doctor)).json()
    assert [s["study_uid"] for s in again["items"]] == [C]
    assert again["items"][0]["message_state"] == "read"
    # a new share with a new message makes it unread again
    await h.share("bkt_again", [C], [("usr_doc", "user")], message="and the other knee")
    again = (await h.http.get("/api/studies", params={"q": "knee"}, headers=doctor)).json()
    assert again["items"][0]["message_state"] == "unread"


async def test_a_first_open_served_elsewhere_reads_the_message_at_once(harness):
    """Issue 16, point 12: a study opened through another process (the viewer's WADO-RS
    routes, another replica) reaches this one as `StudyFirstOpened`, not a minute later as
    `StudyAccessed`: the message label turns green."""
    from studyshare.contracts.events.study import StudyFirstOpened

    h = harness
    await h.study(C, department_id="dep_other", description="knee MR")
    await h.share("bkt_msg", [C], [("usr_doc", "user")], message="please look")
    doctor = h.user("usr_doc", "physician")
    listed = (await h.http.get("/api/studies", headers=doctor)).json()["items"]
    assert [s["message_state"] for s in listed] == ["unread"]
    await h.project(
        h.events(StudyFirstOpened(study_uid=C, user_id="usr_doc", bucket_id="bkt_msg"), "opn_x")
    )
    await h.sync()
    listed = (await h.http.get("/api/studies", headers=doctor)).json()["items"]
    assert [s["message_state"] for s in listed] == ["read"]
    assert await _events(h, "StudyAccessed") == [], "nothing of the minute was needed"


async def test_the_process_serving_the_first_open_reads_the_message_at_once(harness):
    """Issue 16, point 12: opened in the viewer (WADO-RS metadata), the message is read in
    this process's overview at once, before any worker has the event."""
    h = harness
    await h.study(C, department_id="dep_other", description="knee MR")
    await h.share("bkt_viewer", [C], [("usr_doc", "user")], message="please look")
    doctor = h.user("usr_doc", "physician")
    listed = (await h.http.get("/api/studies", headers=doctor)).json()["items"]
    assert [s["message_state"] for s in listed] == ["unread"]
    # what the WADO-RS routes do once the metadata is served (the harness has no instances)
    decision = await h.model.decide(_claims("usr_doc"), C)
    await h.app.state.access_log.record(decision, _claims("usr_doc"), "metadata")
    listed = (await h.http.get("/api/studies", headers=doctor)).json()["items"]
    assert [s["message_state"] for s in listed] == ["read"]
    [opened] = await _events(h, "StudyFirstOpened")
    assert opened["payload"]["bucket_id"] == "bkt_viewer"


async def test_overview_filters_and_paginates(harness):
    from datetime import date

    h = harness
    for n in range(7):
        await h.study(
            f"1.2.9.{n}",
            study_date=date(2026, 1, 1 + n),
            modalities=("CT",) if n % 2 else ("MR",),
            patient_id=f"P{n % 3}",
        )
    staff = h.user("usr_s", "department_staff", department_ids=["dep_rad"])

    async def page(**params):
        r = await h.http.get("/api/studies", params=params, headers=staff)
        assert r.status_code == 200, r.text
        return r.json()

    first = await page(limit=3)
    assert first["total"] == 7 and len(first["items"]) == 3
    assert [s["study_date"] for s in first["items"]] == ["2026-01-07", "2026-01-06", "2026-01-05"]
    rest = await page(offset=3, limit=10)
    assert len(rest["items"]) == 4
    assert {s["study_uid"] for s in first["items"] + rest["items"]} == {
        f"1.2.9.{n}" for n in range(7)
    }
    assert (await page(modality="ct"))["total"] == 3
    assert (await page(patient_id="P0"))["total"] == 3
    assert (await page(date_from="2026-01-03", date_to="2026-01-04"))["total"] == 2
    bad = await h.http.get("/api/studies", params={"limit": 0}, headers=staff)
    assert bad.status_code == 422


async def test_anonymized_share_hides_patient_identity_everywhere_in_the_api(harness):
    h = harness
    await h.study(A, department_id="dep_other")
    await h.share(
        "bkt_anon", [A], [("usr_doc", "user")], anonymize=True, access_level="images_report_write"
    )
    doctor = h.user("usr_doc", "physician")
    detail = (await h.http.get(f"/api/studies/{A}", headers=doctor)).json()
    assert detail["access"]["anonymized"] and detail["access"]["report"] == "none"
    assert detail["patient_id"] is None and detail["patient_initials"] is None
    assert detail["patient_birth_date"] is None
    assert detail["anonymized_name"].endswith(" Anonymous")
    number = detail["anonymized_name"].split()[0]
    assert number.isdigit()
    assert (
        await h.http.get("/api/studies", params={"patient_id": "PAT-1"}, headers=doctor)
    ).json()["total"] == 0, "no search by hidden id"
    r = await h.http.get(f"/api/studies/{A}/report", headers=doctor)
    assert r.status_code == 403 and r.json()["rule"] == "ReportNotAvailableOnAnonymizedShare"


async def test_an_anonymized_study_takes_its_place_in_the_list_by_the_date_it_shows(harness):
    """The list was ordered by the real dates: an anonymized study shown years earlier sat
    between its real neighbours, which gave away its real date and the share's date shift."""
    from datetime import date

    h = harness
    for uid, day in ((A, 16), (B, 15), (C, 14)):
        await h.study(uid, department_id="dep_other", study_date=date(2026, 6, day))
    await h.share("bkt_clear", [A, C], [("usr_doc", "user")])
    await h.share("bkt_anon", [B], [("usr_doc", "user")], anonymize=True)
    doctor = h.user("usr_doc", "physician")
    listed = (await h.http.get("/api/studies", headers=doctor)).json()["items"]
    assert len(listed) == 3 and B not in {s["study_uid"] for s in listed}
    shown = [s["study_date"] for s in listed]
    assert shown == sorted(shown, reverse=True), shown
    assert "2026-06-15" not in shown


async def test_study_details_refuse_unknown_and_foreign_studies(harness):
    """A foreign study the caller may not break the glass on answers as an unknown one."""
    h = harness
    await h.study(A, department_id="dep_other")
    doctor = h.user("usr_doc", "physician")
    foreign = await h.http.get(f"/api/studies/{A}", headers=doctor)
    unknown = await h.http.get("/api/studies/9.9.9", headers=doctor)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["rule"] == unknown.json()["rule"] == "StudyNotFound"
    assert foreign.json()["detail"] == unknown.json()["detail"] == "no such study"
    assert (await h.http.get(f"/api/studies/{A}")).status_code == 401


# -- report ----------------------------------------------------------------------------------


async def test_report_write_is_an_event_with_who_and_when_and_versions_are_kept(harness):
    h = harness
    await h.study(A, department_id="dep_other")
    await h.share("bkt_w", [A], [("usr_writer", "user")], access_level="images_report_write")
    await h.share("bkt_r", [A], [("usr_reader", "user")], access_level="images_report_read")
    await h.share("bkt_i", [A], [("usr_images", "user")], access_level="images")
    writer = h.user("usr_writer", "physician")
    reader = h.user("usr_reader", "physician")
    images = h.user("usr_images", "physician")

    r = await h.http.get(f"/api/studies/{A}/report", headers=reader)
    assert r.status_code == 404 and r.json()["rule"] == "NoReportYet"
    r = await h.http.put(
        f"/api/studies/{A}/report", json={"text": "No abnormality."}, headers=writer
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and r.json()["author_id"] == "usr_writer"
    r = await h.http.put(
        f"/api/studies/{A}/report",
        content=b"%PDF-1.4\n%signed report",
        headers={**writer, "content-type": "application/pdf"},
    )
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["format"] == "pdf"

    [first, second] = sorted(
        await _events(h, "ReportUpdated"), key=lambda e: e["payload"]["report_version"]
    )
    assert first["aggregate_id"] == A and first["actor"]["id"] == "usr_writer"
    assert first["payload"]["author_id"] == "usr_writer" and first["occurred_at"]
    assert second["payload"]["format"] == "pdf"

    latest = (await h.http.get(f"/api/studies/{A}/report", headers=reader)).json()
    assert latest["version"] == 2 and [v["version"] for v in latest["versions"]] == [2, 1]
    pdf = await h.http.get(latest["content_url"], headers=reader)
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    v1 = (
        await h.http.get(f"/api/studies/{A}/report", params={"version": 1}, headers=reader)
    ).json()
    assert v1["text"] == "No abnormality."

    r = await h.http.put(f"/api/studies/{A}/report", json={"text": "mine"}, headers=reader)
    assert r.status_code == 403 and r.json()["rule"] == "ReportWriteNotAllowed"
    r = await h.http.get(f"/api/studies/{A}/report", headers=images)
    assert r.status_code == 403 and r.json()["rule"] == "ReportReadNotAllowed"
    r = await h.http.put(
        f"/api/studies/{A}/report",
        content=b"not a pdf",
        headers={**writer, "content-type": "application/pdf"},
    )
    assert r.status_code == 415 and r.json()["rule"] == "ReportNotAPdf"
    assert len(await _events(h, "ReportUpdated")) == 2, "a refused write stores nothing"


# -- reference numbers -----------------------------------------------------------------------


async def test_reference_numbers_follow_the_department_rule_and_open_the_study_for_a_patient(
    harness,
):
    h = harness
    await h.project(
        h.events(
            DepartmentPolicySet(
                department_id="dep_rad",
                set_by="usr_admin",
                payment_required=True,
                reference_number_rule=ReferenceNumberRule(length=12, alphabet="digits"),
            ),
            "dep_rad",
        )
    )
    await h.study(A)
    staff = h.user("usr_s", "department_staff", department_ids=["dep_rad"])
    r = await h.http.post(
        f"/api/studies/{A}/reference-numbers",
        json={
            "valid_to": (now() + timedelta(days=7)).isoformat(),
            "patient_mobile": "+32470123456",
        },
        headers=staff,
    )
    assert r.status_code == 201, r.text
    ref = r.json()
    number, ref_id = ref["reference_number"], ref["reference_id"]
    assert len(number) == 12 and number.isdigit() and ref["complies_with_rule"] and ref["usable"]
    assert ref["pincode_required"] and ref["has_mobile"]
    [issued] = await _events(h, "ReferenceNumberIssued")
    assert issued["aggregate_id"] == f"ref_{ref_id}" and issued["schema_version"] == 2
    assert number not in str(issued), "the number travels sealed only"
    assert issued["payload"]["patient_birth_date"] == "1970-05-17", "birth date from the study"

    patient = h.tokens.patient(ref_id, A)
    r = await h.http.get(f"/api/studies/{A}", headers=patient)
    assert r.status_code == 200 and r.json()["access"]["via"] == "reference_number"
    assert (await h.http.get(f"/api/studies/{B}", headers=patient)).status_code == 404

    # pincode after payment: it travels only sealed to identity, bound to its number's id
    r = await h.http.put(
        f"/api/studies/{A}/reference-numbers/{ref_id}/pincode",
        json={"pincode": "4321"},
        headers=staff,
    )
    assert r.status_code == 204
    [pin] = await _events(h, "PincodeSet")
    assert pin["schema_version"] == 3
    assert set(pin["payload"]) == {"reference_id", "study_uid", "sealed_pincode", "set_by"}
    sealed = pin["payload"]["sealed_pincode"]
    assert open_pincode(sealed, ref_id, [DEV_PINCODE_PRIVATE_KEY]) == "4321"
    assert open_pincode(sealed, ref_id, [DEV_PRIVATE_KEY]) is None, "not notify's to open"
    assert "4321" not in str(pin) and "$argon2" not in str(pin)

    # failed attempts counted by identity are shown
    for n in (1, 2):
        await h.project(
            h.events(
                PincodeFailed(reference_id=ref_id, study_uid=A, failed_attempts=n),
                f"pat_{ref_id}",
            )
        )
    await h.sync()
    listing = (await h.http.get(f"/api/studies/{A}/reference-numbers", headers=staff)).json()
    [row] = listing["items"]
    assert row["pincode_set"] and row["pincode_failures"] == 2

    # revoked: the patient's next request is refused
    r = await h.http.delete(f"/api/studies/{A}/reference-numbers/{ref_id}", headers=staff)
    assert r.status_code == 204
    r = await h.http.get(f"/api/studies/{A}", headers=patient)
    assert r.status_code == 403 and r.json()["rule"] == "ReferenceNumberNotUsable"
    r = await h.http.delete(f"/api/studies/{A}/reference-numbers/{ref_id}", headers=staff)
    assert r.status_code == 409 and r.json()["rule"] == "ReferenceNumberAlreadyRevoked"


async def test_numbers_breaking_the_rule_are_flagged_unusable_and_regenerated(harness):
    h = harness
    await h.study(A)
    staff = h.user("usr_s", "department_admin", admin_of=["dep_rad"], department_ids=["dep_rad"])
    r = await h.http.post(
        f"/api/studies/{A}/reference-numbers", json={"reference_number": "1234"}, headers=staff
    )
    assert r.status_code == 201
    assert r.json()["complies_with_rule"] is False and r.json()["usable"] is False
    weak = r.json()["reference_id"]
    patient = h.tokens.patient(weak, A)
    r = await h.http.get(f"/api/studies/{A}", headers=patient)
    assert r.status_code == 403 and r.json()["rule"] == "ReferenceNumberNotUsable"
    r = await h.http.put(
        f"/api/studies/{A}/reference-numbers/{weak}/pincode",
        json={"pincode": "1111"},
        headers=staff,
    )
    assert r.status_code == 422 and r.json()["rule"] == "ReferenceNumberBreaksComplexityRule"

    good = (
        await h.http.post(
            f"/api/studies/{A}/reference-numbers",
            json={"patient_mobile": "+32470999888"},
            headers=staff,
        )
    ).json()["reference_number"]
    # the department raises its rule: the number issued under the old rule is now flagged
    await h.project(
        h.events(
            DepartmentPolicySet(
                department_id="dep_rad",
                set_by="usr_admin",
                reference_number_rule=ReferenceNumberRule(length=14, alphabet="alphanumeric"),
            ),
            "dep_rad",
        )
    )
    await h.sync()
    rows = {
        r["reference_number"]: r
        for r in (await h.http.get(f"/api/studies/{A}/reference-numbers", headers=staff)).json()[
            "items"
        ]
    }
    assert rows[good]["complies_with_rule"] is False
    r = await h.http.post(f"/api/studies/{A}/reference-numbers/regenerate", headers=staff)
    assert r.status_code == 200, r.text
    [new] = r.json()["issued"][-1:]
    assert len(new["reference_number"]) == 14 and new["usable"]
    issued = r.json()["issued"]
    assert len(issued) == 2 and all(len(i["reference_number"]) == 14 for i in issued)
    assert sum(i["has_mobile"] for i in issued) == 1, "a replacement keeps the patient's mobile"
    rows = {
        r["reference_number"]: r
        for r in (await h.http.get(f"/api/studies/{A}/reference-numbers", headers=staff)).json()[
            "items"
        ]
    }
    assert rows[good]["revoked"] and rows["1234"]["revoked"]
    assert sum(1 for r in rows.values() if r["usable"]) >= 1


async def test_only_the_study_department_manages_reference_numbers(harness):
    h = harness
    await h.study(A)
    physician = h.user("usr_p", "physician", department_ids=["dep_rad"])
    r = await h.http.post(f"/api/studies/{A}/reference-numbers", json={}, headers=physician)
    assert r.status_code == 403
    assert r.json()["rule"] == "ReferenceNumbersManagedByStudyDepartmentOnly"
    outsider = h.user("usr_o", "department_staff", department_ids=["dep_other"])
    for study_uid in (A, "9.9.9"):  # no way into A: answered as for a study never received
        r = await h.http.post(
            f"/api/studies/{study_uid}/reference-numbers", json={}, headers=outsider
        )
        assert r.status_code == 404
        assert r.json()["rule"] == "StudyNotFound" and r.json()["detail"] == "no such study"
    desk = h.user("usr_desk", "service_desk")
    assert (
        await h.http.get(f"/api/studies/{A}/reference-numbers", headers=desk)
    ).status_code == 200
    staff = h.user("usr_s", "department_staff", department_ids=["dep_rad"])
    r = await h.http.post(
        f"/api/studies/{A}/reference-numbers",
        json={"valid_from": "2026-12-01T00:00:00Z", "valid_to": "2026-11-01T00:00:00Z"},
        headers=staff,
    )
    assert r.status_code == 422 and r.json()["rule"] == "ReferenceNumberValidityInverted"
    assert await _events(h, "ReferenceNumberIssued") == [], "refused commands store nothing"


# -- break-the-glass -------------------------------------------------------------------------


async def _glass_policy(h, department_id: str, who: str, institution: str | None = None) -> None:
    created = DepartmentCreated(
        department_id=department_id,
        name=department_id,
        country="be",
        created_by="usr_desk",
        institution_id=institution,
    )
    policy = DepartmentPolicySet(department_id=department_id, set_by="usr_x", break_the_glass=who)
    await h.project(h.events(created, department_id), h.events(policy, department_id))
    await h.sync()


async def test_break_the_glass_needs_a_reason_is_logged_and_opens_for_a_limited_time(harness):
    h = harness
    await _glass_policy(h, "dep_other", "environment")
    await h.study(A, department_id="dep_other")
    doctor = h.user("usr_er", "physician", department_ids=["dep_er"])
    assert (await h.http.get(f"/api/studies/{A}", headers=doctor)).status_code == 403
    r = await h.http.post(f"/api/studies/{A}/break-glass", json={"reason": "  "}, headers=doctor)
    assert r.status_code == 422 and r.json()["rule"] == "BreakTheGlassReasonRequired"
    assert await _events(h, "BreakTheGlassUsed") == []
    r = await h.http.post(
        f"/api/studies/{A}/break-glass",
        json={"reason": "unconscious patient at the ER"},
        headers=doctor,
    )
    assert r.status_code == 201, r.text
    assert r.json()["access"]["via"] == "break_the_glass"
    [event] = await _events(h, "BreakTheGlassUsed")
    assert event["aggregate_type"] == "BreakTheGlass" and event["aggregate_id"].startswith("btg_")
    assert event["topic"] == "study.events"
    assert event["payload"]["reason"] == "unconscious patient at the ER"
    assert event["payload"]["department_id"] == "dep_other"
    r = await h.http.get(f"/api/studies/{A}", headers=doctor)
    assert r.status_code == 200 and r.json()["access"]["via"] == "break_the_glass"
    assert r.json()["access"]["download"] is False

    await h.share("bkt_x", [A], [("usr_granted", "user")])
    granted = h.user("usr_granted", "physician")
    r = await h.http.post(f"/api/studies/{A}/break-glass", json={"reason": "x"}, headers=granted)
    assert r.status_code == 409 and r.json()["rule"] == "BreakTheGlassNotNeeded"
    patient = h.tokens.patient("X1", A)
    r = await h.http.post(f"/api/studies/{A}/break-glass", json={"reason": "x"}, headers=patient)
    assert r.status_code == 403


async def test_break_the_glass_follows_the_department_policy_and_hides_unknown_studies(harness):
    h = harness
    await _glass_policy(h, "dep_src", "institution", institution="inst_1")
    await _glass_policy(h, "dep_sister", "institution", institution="inst_1")
    await _glass_policy(h, "dep_far", "institution")
    await h.study(A, department_id="dep_src")
    sister = h.user("usr_sis", "department_staff", department_ids=["dep_sister"])
    far = h.user("usr_far", "physician", department_ids=["dep_far"])
    auditor = h.user("usr_aud", "auditor", "physician", department_ids=["dep_sister"])
    body = {"reason": "unconscious patient"}
    refused = await h.http.post(f"/api/studies/{A}/break-glass", json=body, headers=far)
    assert refused.status_code == 403 and refused.json()["rule"] == "BreakTheGlassNotAllowed"
    unknown = await h.http.post("/api/studies/9.9.9/break-glass", json=body, headers=far)
    assert (unknown.status_code, unknown.headers["content-type"]) == (
        refused.status_code,
        refused.headers["content-type"],
    )
    assert {k: v for k, v in unknown.json().items() if k != "instance"} == {
        k: v for k, v in refused.json().items() if k != "instance"
    }
    r = await h.http.post(f"/api/studies/{A}/break-glass", json=body, headers=auditor)
    assert r.status_code == 403 and r.json()["rule"] == "BreakTheGlassNotAllowed"
    r = await h.http.post(f"/api/studies/{A}/break-glass", json=body, headers=sister)
    assert r.status_code == 201, r.text
    assert await _events(h, "BreakTheGlassUsed") != []

    # A stricter policy ends the unlock at the next decision; with no way in left, the study
    # answers as an unknown one (as a private repository does to a collaborator removed)
    await _glass_policy(h, "dep_src", "nobody", institution="inst_1")
    assert (await h.http.get(f"/api/studies/{A}", headers=sister)).status_code == 404


# -- study logging ---------------------------------------------------------------------------


async def test_every_access_reaches_the_study_logging_coalesced(harness):
    h = harness
    await h.study(A, department_id="dep_other")
    await h.share(
        "bkt_log",
        [A],
        [("usr_doc", "user")],
        access_level="images_report_write",
        allow_download=True,
    )
    doctor = h.user("usr_doc", "physician")
    for _ in range(5):
        assert (await h.http.get(f"/api/studies/{A}", headers=doctor)).status_code == 200
    await h.http.put(f"/api/studies/{A}/report", json={"text": "ok"}, headers=doctor)
    await h.http.get(f"/api/studies/{A}/report", headers=doctor)
    decision = await h.model.decide(_claims("usr_doc"), A)
    await h.app.state.access_log.record(decision, _claims("usr_doc"), "download")
    await h.app.state.access_log.flush(everything=True)
    accessed = await _events(h, "StudyAccessed")
    by_action = {e["payload"]["action"]: e for e in accessed}
    assert set(by_action) == {"view", "report_write", "report_read"}
    assert by_action["view"]["payload"]["count"] == 5, "five views, one event"
    assert by_action["view"]["payload"]["bucket_id"] == "bkt_log"
    assert by_action["view"]["aggregate_id"].startswith("acc_")
    assert by_action["view"]["actor"]["id"] == "usr_doc"
    [download] = await _events(h, "StudyDownloaded")
    assert download["payload"]["via"] == "grant" and download["payload"]["user_id"] == "usr_doc"


def _claims(sub, *roles):
    from studyshare.contracts.tokens import AccessClaims

    return AccessClaims(sub=sub, roles=roles, iat=0, exp=2**31)


async def test_reference_numbers_are_valid_as_the_department_allows(harness):
    """Issue 16, point 2: 'valid to' defaults to the department's validity and may not lie
    later; a department without one sets no date restriction."""
    from datetime import UTC, datetime

    h = harness
    await h.study(A, department_id="dep_rad")
    await h.study(B, department_id="dep_open")
    policy = DepartmentPolicySet(
        department_id="dep_rad", set_by="usr_admin", reference_number_validity_days=30
    )
    await h.project(h.events(policy, "dep_rad"))
    await h.sync()
    staff = h.user("usr_s", "department_staff", department_ids=["dep_rad", "dep_open"])
    before = datetime.now(UTC)
    r = await h.http.post(f"/api/studies/{A}/reference-numbers", json={}, headers=staff)
    assert r.status_code == 201, r.text
    [issued] = await _events(h, "ReferenceNumberIssued")
    valid_to = datetime.fromisoformat(issued["payload"]["valid_to"]).replace(tzinfo=UTC)
    assert timedelta(days=30) <= valid_to - before < timedelta(days=30, minutes=1)
    too_long = (before + timedelta(days=45)).isoformat()
    r = await h.http.post(
        f"/api/studies/{A}/reference-numbers", json={"valid_to": too_long}, headers=staff
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["rule"] == "ReferenceNumberValidityBeyondPolicy"
    r = await h.http.post(f"/api/studies/{B}/reference-numbers", json={}, headers=staff)
    assert r.status_code == 201
    unrestricted = (await _events(h, "ReferenceNumberIssued"))[-1]
    assert unrestricted["payload"]["valid_to"] is None
    assert len(await _events(h, "ReferenceNumberIssued")) == 2, "the refusal stored nothing"


async def test_revoked_study_in_bucket_disappears_from_overview(harness):
    h = harness
    await h.study(A, department_id="dep_other")
    await h.study(B, department_id="dep_other")
    await h.share("bkt_two", [A, B], [("usr_doc", "user")])
    doctor = h.user("usr_doc", "physician")
    assert (await h.http.get("/api/studies", headers=doctor)).json()["total"] == 2
    await h.project(
        h.events(
            AccessRevoked(bucket_id="bkt_two", scope="study", study_uid=A, revoked_by="usr_sender"),
            "bkt_two",
        )
    )
    await h.sync()
    items = (await h.http.get("/api/studies", headers=doctor)).json()["items"]
    assert [s["study_uid"] for s in items] == [B]


async def test_patient_report_follows_the_department_policy_and_service_desk_sees_all(harness):
    h = harness
    await h.study(A, department_id="dep_rad")
    await h.study(B, department_id="dep_open")
    # issue 16, point 2: the department's own policy (identity's DepartmentPolicySet)
    policy = DepartmentPolicySet(
        department_id="dep_rad", set_by="usr_admin", patient_report_access="none"
    )
    await h.project(h.events(policy, "dep_rad"))
    await h.sync()
    staff = h.user("usr_s", "department_staff", department_ids=["dep_rad", "dep_open"])
    for uid in (A, B):
        r = await h.http.put(f"/api/studies/{uid}/report", json={"text": "fine"}, headers=staff)
        assert r.status_code == 200
    numbers = {}
    for uid in (A, B):
        r = await h.http.post(f"/api/studies/{uid}/reference-numbers", json={}, headers=staff)
        numbers[uid] = r.json()["reference_id"]
    closed = h.tokens.patient(numbers[A], A)
    r = await h.http.get(f"/api/studies/{A}/report", headers=closed)
    assert r.status_code == 403 and r.json()["rule"] == "ReportReadNotAllowed"
    opened = h.tokens.patient(numbers[B], B)
    r = await h.http.get(f"/api/studies/{B}/report", headers=opened)
    assert r.status_code == 200 and r.json()["text"] == "fine"
    detail = (await h.http.get(f"/api/studies/{B}", headers=opened)).json()
    assert detail["has_report"] and detail["report_version"] == 1
    listing = (await h.http.get("/api/studies", headers=opened)).json()
    assert [s["study_uid"] for s in listing["items"]] == [B], "a patient sees one study"
    r = await h.http.put(f"/api/studies/{B}/report", json={"text": "x"}, headers=opened)
    assert r.status_code == 403, "patients never write the report"

    desk = h.user("usr_desk", "service_desk")
    everything = (await h.http.get("/api/studies", headers=desk)).json()
    assert {s["study_uid"] for s in everything["items"]} == {A, B}
    assert {s["access"]["via"] for s in everything["items"]} == {"service_desk"}
