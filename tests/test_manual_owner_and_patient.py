"""Through the gateway (issue 16, points 3, 7 and 14): the exam owner and the sending
department's staff read the Access tab under the "Exam owner" heading, while a recipient who
did not share and another department are refused; labels to pick from are the user's own or
their group's; a patient logged in with a reference number reads who opened their study."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from studyshare.devstack.platform import LocalPlatform

from .storykit import Gateway, ok, problem, unique, wait_for

BIRTH_DATE = "19750620"


@pytest.fixture(scope="module")
def people(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department_id = api.radiology_department(desk, f"Radiology {unique('')}")
    other_department = api.radiology_department(desk, f"Elsewhere {unique('')}")
    admin = api.register(
        desk,
        "Rita",
        roles=["department_admin", "department_staff"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    owner = api.register(admin.headers, "Olga", roles=["physician"], department_ids=[department_id])
    staff = api.register(
        admin.headers, "Stan", roles=["department_staff"], department_ids=[department_id]
    )
    stranger = api.register(desk, "Xavier", roles=["physician"], department_ids=[other_department])
    colleague = api.register(desk, "Claire", roles=["physician"], language="nl")
    study = api.upload(owner, "CT thorax", "Story^Petra", BIRTH_DATE)
    ok(api.client.post("/api/labels", json={"text": "Follow-up"}, headers=owner.headers), 201)
    picked = ok(api.client.get("/api/labels", headers=owner.headers))
    assert [(x["text"], x["scope"]) for x in picked] == [("Follow-up", "user")]
    bucket_id = api.shared(
        owner,
        study_uids=[study.study_uid],
        recipients=[{"kind": "user", "id": colleague.user_id}],
        access_level="images_report_read",
        label={"text": picked[0]["text"], "scope": picked[0]["scope"]},
    )
    return SimpleNamespace(
        admin=admin,
        owner=owner,
        staff=staff,
        stranger=stranger,
        colleague=colleague,
        uid=study.study_uid,
        bucket_id=bucket_id,
    )


def test_the_owner_and_the_department_see_who_can_open_the_study_and_others_are_refused(
    api: Gateway, people: SimpleNamespace
):
    uid, p = people.uid, people
    tab = api.access_tab(p.owner, uid, lambda t: bool(t["users"]), "the colleague's grant")
    assert tab["view"] == "owner"
    assert tab["exam_owner"] == {"user_id": p.owner.user_id, "name": "Olga Story"}
    assert [g["recipient_id"] for g in tab["users"]] == [p.colleague.user_id]
    assert tab["reference_numbers"] == []
    staff = api.access_tab(p.staff, uid, lambda t: bool(t["users"]), "the grant, for the staff")
    assert staff["view"] == "department" and staff["exam_owner"]["name"] == "Olga Story"
    [bucket] = ok(api.client.get("/api/shares", params={"study_uid": uid}, headers=p.staff.headers))
    assert bucket["label"] == {"text": "Follow-up", "scope": "user"} and not bucket["may_revoke"]
    for refused in (p.colleague, p.stranger):
        r = api.client.get(f"/api/audit/studies/{uid}/access", headers=refused.headers)
        problem(r, 403, "NotAmongThoseWhoShare")
    assert ok(api.client.get("/api/labels", headers=p.colleague.headers)) == []
    problem(
        api.client.post("/api/labels", json={"text": "  "}, headers=p.owner.headers),
        422,
        "LabelTextInvalid",
    )


def test_a_patient_sees_who_opened_their_study(api: Gateway, people: SimpleNamespace):
    uid, p = people.uid, people
    # the colleague opens the shared study, once the study store has the grant
    wait_for(lambda: api.study(p.colleague, uid).status_code == 200, "the colleague's grant")
    number = ok(
        api.client.post(f"/api/studies/{uid}/reference-numbers", json={}, headers=p.admin.headers),
        201,
    )["reference_number"]
    birth = f"{BIRTH_DATE[:4]}-{BIRTH_DATE[4:6]}-{BIRTH_DATE[6:]}"
    api.logged(p.admin, uid, [("ReferenceNumberIssued", lambda e: True)])

    def login() -> httpx.Response | None:
        r = api.client.post(
            "/api/auth/patient-login", json={"reference_number": number, "date_of_birth": birth}
        )
        return r if r.status_code == 200 else None

    token = wait_for(login, "the reference number known to identity").json()
    patient = {"Authorization": f"Bearer {token['access_token']}"}

    def opened_by_colleague() -> dict | None:
        body = ok(api.client.get("/api/audit/my-study/openings", headers=patient))
        return body if any(o["user_name"] == "Claire Story" for o in body["items"]) else None

    body = wait_for(opened_by_colleague, "the colleague's opening in the patient's list", 60)
    assert body["study_uid"] == uid
    seen = next(o for o in body["items"] if o["user_name"] == "Claire Story")
    assert seen["via"] == "grant" and not seen["by_patient"]
    assert number not in str(body) and "Petra" not in str(body)
    problem(
        api.client.get("/api/audit/my-study/openings", headers=p.owner.headers),
        403,
        "PatientTokenOnly",
    )
