# ruff: noqa: F811 - the fixtures `client` and `fake` are imported from the Access tab tests
"""The "Exam owner" heading and the crosses of the Access tab, the labels page and the share
dialog's label list, and a patient's "who opened my study" page (issue 16, points 3, 7, 14),
against a fake public API."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from studyshare.portal import i18n
from studyshare.portal.pages.shares import picked_label, share_request

from .test_access_and_audit_pages import (  # noqa: F401 - the fixtures
    UID,
    FakeAPI,
    admin_routes,
    bucket,
    client,
    csrf,
    fake,
    log_in,
    problem,
)


def test_the_exam_owner_heads_the_tab_and_crosses_follow_may_revoke(
    client: TestClient, fake: FakeAPI
) -> None:
    fake.me = {"first_name": "Stan", "roles": ["department_staff"], "department_ids": ["dep_1"]}
    log_in(client)
    admin_routes(
        fake,
        {
            ("GET", "/api/shares"): httpx.Response(
                200, json=[bucket("bkt_1", may_revoke=False), bucket("bkt_2", may_revoke=True)]
            ),
            ("GET", f"/api/audit/studies/{UID}/access"): httpx.Response(
                200,
                json={
                    "view": "department",
                    "exam_owner": {"user_id": "usr_owner", "name": "Olga Owner"},
                    "break_the_glass": [],
                },
            ),
        },
    )
    text = client.get(f"/studies/{UID}/access").text
    assert 'id="exam-owner"' in text and "Exam owner" in text and "Olga Owner" in text
    rows = text.split('class="grant"')[1:]
    crossed = {
        r.split('data-bucket="')[1].split('"')[0]: 'class="danger cross withdraw"' in r
        for r in rows
    }
    assert crossed == {"bkt_1": False, "bkt_2": True}

    fake.routes[("GET", f"/api/audit/studies/{UID}/access")] = problem(403, "X", "no")
    assert 'id="exam-owner"' not in client.get(f"/studies/{UID}/access").text


def test_the_labels_page_lists_adds_and_removes_through_the_share_api(
    client: TestClient, fake: FakeAPI
) -> None:
    fake.routes = {
        ("GET", "/api/labels"): httpx.Response(
            200,
            json=[
                {"label_id": "lbl_1", "text": "Follow up", "scope": "user"},
                {
                    "label_id": "lbl_2",
                    "text": "Practice",
                    "scope": "group",
                    "group_id": "grp_1",
                    "group_name": "Zuid",
                },
            ],
        ),
        ("GET", "/api/users/me/group-confirmations"): httpx.Response(
            200, json=[{"group_id": "grp_1", "name": "Zuid"}]
        ),
        ("POST", "/api/labels"): problem(409, "LabelAlreadyExists", "the list already has it"),
        ("DELETE", "/api/labels/lbl_2"): httpx.Response(204),
    }
    page = client.get("/labels").text
    assert "Follow up" in page and "Members of Zuid" in page and "Only me" in page
    token = csrf(client, "/labels")
    r = client.post("/labels", data={"csrf": token, "text": "Practice", "group_id": "grp_1"})
    assert "the list already has it" in r.text, "the refusal is shown"
    assert fake.sent("POST", "/api/labels") == [({}, {"text": "Practice", "group_id": "grp_1"})]
    r = client.post("/labels/lbl_2/remove", data={"csrf": csrf(client, "/labels")})
    assert "The label is removed." in r.text and fake.sent("DELETE", "/api/labels/lbl_2")


def test_a_label_picked_from_the_list_is_the_shares_label() -> None:
    assert picked_label("group|Practice") == {"text": "Practice", "scope": "group"}
    assert picked_label("nonsense") is None
    form = {"study": [UID], "label_pick": ["group|Practice"], "label": ["typed"]}
    assert share_request(form)["label"] == {"text": "Practice", "scope": "group"}
    assert share_request({"study": [UID], "label": ["typed"]})["label"]["text"] == "typed"


def test_a_patient_sees_who_opened_their_study(client: TestClient, fake: FakeAPI) -> None:
    fake.routes = {
        ("POST", "/api/auth/patient-login"): httpx.Response(
            200,
            json={"access_token": "p1", "refresh_token": "", "expires_in": 900, "study_uid": UID},
        ),
        ("GET", "/api/audit/my-study/openings"): httpx.Response(
            200,
            json={
                "study_uid": UID,
                "as_of": "2026-12-03T10:00:00Z",
                "items": [
                    {
                        "at": "2026-12-02T09:00:00Z",
                        "kind": "report_read",
                        "via": "grant",
                        "by_patient": False,
                        "user_name": "Alice Ames",
                        "department_names": ["Radiology Sint-Jan"],
                        "group_name": None,
                        "count": 1,
                    },
                    {
                        "at": "2026-12-02T10:00:00Z",
                        "kind": "view",
                        "via": "reference_number",
                        "by_patient": True,
                        "user_name": None,
                        "department_names": [],
                        "group_name": None,
                        "count": 2,
                    },
                ],
            },
        ),
    }
    assert client.get("/my-study/openings", follow_redirects=False).status_code in (302, 303)
    client.post("/logout", data={"csrf": csrf(client, "/studies")})
    token = csrf(client, "/patient-login")
    client.post(
        "/patient-login",
        data={"csrf": token, "reference_number": "R1", "date_of_birth": "1980-01-01"},
    )
    page = client.get("/my-study/openings")
    assert page.status_code == 200, page.text
    assert "Alice Ames" in page.text and "Radiology Sint-Jan" in page.text
    assert "read the report" in page.text and "You (with your reference number)" in page.text
    assert 'id="nav-openings"' in page.text
    assert fake.sent("GET", "/api/audit/my-study/openings") == [({}, None)]
    # when, in the patient's own time: 09:00 and 10:00 UTC are 10:00 and 11:00 in Brussels
    assert ">2026-12-02 10:00</time>" in page.text and ">2026-12-02 11:00</time>" in page.text
    assert "Times are local time (Europe/Brussels)." in page.text


def test_every_language_has_the_new_words() -> None:
    for language in i18n.LANGUAGES:
        t = i18n.translator(language)
        for key in ("access_tab.exam_owner", "labels.pick", "openings.title"):
            assert t(key) != key
    assert i18n.translator("nl")("openings.kind.download") != "downloaded the study"
