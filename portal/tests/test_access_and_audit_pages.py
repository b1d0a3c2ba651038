"""The Access tab and the auditor's pages without a platform: the public API is a fake that
answers per route and records what the portal sent."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient

from studyshare.portal.adapters.public_api import ApiProblem, PublicAPI
from studyshare.portal.app import create_app
from studyshare.portal.pages.access import (
    bucket_rows,
    grants_of,
    issue_request,
    reference_state,
    section_of,
    tabs_for,
)
from studyshare.portal.pages.audit import field_of, log_query, pages_of
from studyshare.portal.settings import PortalSettings
from studyshare.portal.times import utc_moment

UID = "1.2.826.0.1.7"
BRUSSELS = ZoneInfo("Europe/Brussels")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def problem(status: int, rule: str | None, detail: str, **extra: Any) -> httpx.Response:
    body = {"status": status, "title": "refused", "detail": detail, **extra}
    if rule:
        body["rule"] = rule
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def bucket(bucket_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "bucket_id": bucket_id,
        "status": "active",
        "sender_id": "usr_sender",
        "sender_name": "Pieter Story",
        "sending_department_id": "dep_1",
        "parent_bucket_id": None,
        "children": [],
        "study_uids": [UID],
        "active_study_uids": [UID],
        "recipients": [
            {"recipient_id": "usr_claire", "kind": "user", "name": "Claire Story", "revoked": False}
        ],
        "access_level": "images_report_read",
        "valid_until": "2027-01-31T23:59:59Z",
        "unlimited": False,
        "anonymize": False,
        "two_factor": True,
        "locked": False,
        "expired": False,
        "shared_at": "2026-12-01T10:00:00Z",
        **fields,
    }


#: a reference id (`studyshare.plumbing.reference_ids`): the study store names a number by it
REF_ID = "mfrggzdfmztwq2lknnwg23tpobyxe43u"
REFERENCE = {
    "reference_id": REF_ID,
    "reference_number": "AB12CD34",  # the clear number, for the department's staff only
    "study_uid": UID,
    "issued_at": "2026-12-02T09:00:00Z",
    "valid_from": None,
    "valid_to": None,
    "complies_with_rule": True,
    "usable": True,
    "revoked": False,
    "pincode_required": True,
    "pincode_set": False,
    "pincode_failures": 2,
}


class FakeAPI:
    """Login and `/api/users/me`, then whatever `routes` answer; every call is recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str], Any]] = []
        self.me: dict[str, Any] = {"first_name": "Rita", "roles": ["department_admin"]}
        self.routes: dict[tuple[str, str], Answer] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.calls.append((request.method, path, dict(request.url.params), body))
        if path == "/api/auth/login":
            return httpx.Response(
                200, json={"access_token": "a1", "refresh_token": "r1", "expires_in": 900}
            )
        if path == "/api/users/me":
            return httpx.Response(200, json=self.me)
        answer = self.routes.get((request.method, path))
        if answer is None:
            return problem(404, None, "nothing here")
        return answer(request) if callable(answer) else answer

    def sent(self, method: str, path: str) -> list[tuple[dict[str, str], Any]]:
        return [(params, body) for m, p, params, body in self.calls if (m, p) == (method, path)]


@pytest.fixture
def fake() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def client(fake: FakeAPI):
    api = PublicAPI("http://gateway.test", 5)
    api.client = httpx.AsyncClient(
        base_url="http://gateway.test", transport=httpx.MockTransport(fake)
    )
    app = create_app(PortalSettings(environment="test"), api=api)
    with TestClient(app, base_url="https://portal.test") as c:
        log_in(c)
        yield c


def log_in(client: TestClient) -> None:
    """(Again:) the session's user is what `GET /api/users/me` answered at login."""
    token = CSRF.search(client.get("/login").text).group(1)
    client.post("/login", data={"csrf": token, "username": "rita", "password": "x"})


def csrf(client: TestClient, page: str) -> str:
    return CSRF.search(client.get(page).text).group(1)


def admin_routes(fake: FakeAPI, overrides: dict[tuple[str, str], Answer] | None = None) -> None:
    q = f"/api/studies/{UID}"
    fake.routes = {
        ("GET", "/api/shares"): httpx.Response(200, json=[bucket("bkt_1")]),
        ("GET", f"/api/audit/studies/{UID}/access"): httpx.Response(
            200,
            json={
                "break_the_glass": [
                    {
                        "user_id": "usr_er",
                        "reason": "patient in the ER",
                        "at": "2026-12-02T03:00:00Z",
                        "valid_until": "2026-12-03T03:00:00Z",
                    }
                ]
            },
        ),
        ("GET", f"{q}/transfers"): httpx.Response(
            200,
            json=[
                {
                    "transfer_id": "trf_1",
                    "destination_kind": "pacs",
                    "destination_id": "dep_pacs",
                    "destination_name": "PACS Gent",
                    "state": "failed",
                    "attempts": 3,
                    "requested_by": "usr_sender",
                    "requested_at": "2026-12-01T11:00:00Z",
                    "updated_at": "2026-12-01T11:05:00Z",
                    "last_error": "association rejected",
                }
            ],
        ),
        ("GET", f"{q}/rsw"): problem(404, "NoRswEndpoint", "no RSW endpoint"),
        ("GET", f"{q}/reference-numbers"): httpx.Response(200, json={"items": [REFERENCE]}),
        **(overrides or {}),
    }


# -- view logic ------------------------------------------------------------------------------


def test_every_recipient_of_every_bucket_is_a_line_with_its_state() -> None:
    buckets = [
        bucket("bkt_old", shared_at="2026-11-01T10:00:00Z", status="expired", expired=True),
        bucket(
            "bkt_two",
            recipients=[
                {"recipient_id": "usr_a", "kind": "user", "name": "A", "revoked": True},
                {"recipient_id": "grp_1", "kind": "group", "name": "Zuid", "revoked": False},
                {"recipient_id": "email:x@y.org", "kind": "email", "email": "x@y.org"},
            ],
            locked=True,
        ),
        bucket("bkt_removed", active_study_uids=[]),
    ]
    rows = grants_of(buckets, UID)
    states = [(r["bucket_id"], r["recipient_id"], r["state"], r["withdrawable"]) for r in rows]
    assert states == [
        ("bkt_two", "grp_1", "locked", True),
        ("bkt_two", "email:x@y.org", "locked", True),
        ("bkt_two", "usr_a", "revoked", False),
        ("bkt_removed", "usr_claire", "removed", False),
        ("bkt_old", "usr_claire", "expired", False),
    ]
    email = next(r for r in rows if r["kind"] == "email")
    assert email["name"] == "x@y.org" and email["granted_by"] == "Pieter Story"


def test_a_bucket_may_be_revoked_while_active_or_locked_and_unlocked_only_when_locked() -> None:
    rows = {
        b["bucket_id"]: (b["state"], b["revocable"], b["unlockable"])
        for b in bucket_rows(
            [
                bucket("bkt_a"),
                bucket("bkt_l", locked=True),
                bucket("bkt_r", status="revoked", locked=True),
            ],
            UID,
        )
    }
    assert rows == {
        "bkt_a": ("active", True, False),
        "bkt_l": ("locked", True, True),
        "bkt_r": ("revoked", False, False),
    }


def test_reference_number_states() -> None:
    assert reference_state(REFERENCE) == "awaiting_pincode"
    assert reference_state({**REFERENCE, "pincode_set": True}) == "usable"
    assert reference_state({**REFERENCE, "complies_with_rule": False}) == "non_compliant"
    assert reference_state({**REFERENCE, "revoked": True}) == "revoked"
    assert reference_state({**REFERENCE, "pincode_required": False, "usable": False}) == (
        "not_usable"
    )


def test_the_issue_form_becomes_the_apis_request() -> None:
    """The form's days are days where the portal is (Brussels: UTC+1 in winter, +2 in
    summer), sent as UTC moments."""
    assert issue_request({"valid_from": "", "valid_to": "", "patient_mobile": " "}, BRUSSELS) == {}
    assert issue_request(
        {"valid_from": "2027-01-01", "valid_to": "2027-07-31", "patient_mobile": "+32470"},
        BRUSSELS,
    ) == {
        "valid_from": "2026-12-31T23:00:00+00:00",
        "valid_to": "2027-07-31T21:59:59+00:00",
        "patient_mobile": "+32470",
    }
    assert issue_request({"valid_from": "tomorrow"}, BRUSSELS) == {"valid_from": "tomorrow"}


def test_tabs_are_a_hint_from_roles_and_access_path() -> None:
    assert tabs_for({"roles": ["physician"]}, "grant") == ["study"]
    assert tabs_for({"roles": ["physician"]}, "department") == ["study", "access"]
    assert tabs_for({"roles": ["physician"]}, "grant", further_sharing=True) == ["study", "access"]
    assert tabs_for({"roles": ["auditor"]}, None) == ["study", "access", "logging"]
    assert tabs_for({"admin_of": ["dep_1"]}, None) == ["study", "access", "logging"]
    assert tabs_for({}, None, current="logging") == ["study", "logging"]


def test_a_refused_listing_is_hidden_or_shows_its_reason() -> None:
    assert section_of(ApiProblem(403, {"detail": "no"})).hidden
    assert section_of(ApiProblem(404, {"detail": "no"})).hidden
    shown = section_of(ApiProblem(503, {"detail": "later"}))
    assert shown.shown and shown.problem == "later"
    assert section_of([1, 2], len).data == 2


def test_log_filters_become_the_audit_apis_parameters() -> None:
    query = {"category": "lock", "actor": " usr_1 ", "from": "2026-12-01T10:30", "to": ""}
    allowed = ("category", "actor", "from", "to")
    assert log_query(query, allowed, BRUSSELS) == {
        "category": "lock",
        "actor": "usr_1",
        "from": "2026-12-01T09:30:00+00:00",  # 10:30 in Brussels
    }
    assert log_query({"study": "1.2"}, allowed, BRUSSELS) == {}
    assert utc_moment("2026-12-01", BRUSSELS) == "2026-11-30T23:00:00+00:00"
    assert utc_moment("2026-12-01T10:30:00+00:00", BRUSSELS) == "2026-12-01T10:30:00+00:00"
    assert utc_moment("yesterday", BRUSSELS) == "yesterday"
    links = pages_of(
        {"category": "lock", "offset": "100"},
        {"offset": 100, "limit": 100, "next_offset": 200},
    )
    assert links == {"previous": "?category=lock&offset=0", "next": "?category=lock&offset=200"}
    refused = ApiProblem(422, {"detail": "bad", "errors": [{"loc": ["query", "from"]}]})
    assert field_of(refused, ("from", "to")) == "from"


# -- pages -----------------------------------------------------------------------------------


def test_the_access_tab_shows_every_section_the_api_answers(
    client: TestClient, fake: FakeAPI
) -> None:
    admin_routes(fake)
    page = client.get(f"/studies/{UID}/access")
    assert page.status_code == 200
    text = page.text
    for section in ("users", "buckets", "break-glass", "transfers", "reference-numbers"):
        assert f'id="{section}"' in text, section
    assert 'id="rsw"' not in text  # no RSW endpoint: not shown
    assert "Claire Story" in text and "Pieter Story" in text
    assert "patient in the ER" in text and "association rejected" in text
    assert "AB12CD34" in text and "awaiting pincode" in text
    assert fake.sent("GET", "/api/shares") == [({"study_uid": UID}, None)]
    assert not fake.sent("GET", f"/api/studies/{UID}"), "opening the tab is no study view"
    assert 'id="tab-access"' in text and 'aria-current="page"' in text


def test_sections_the_api_refuses_are_left_out(client: TestClient, fake: FakeAPI) -> None:
    fake.me = {"first_name": "Pieter", "roles": ["physician"]}
    log_in(client)
    refused = problem(403, "AuditLogReadersOnly", "only auditors")
    admin_routes(
        fake,
        {
            ("GET", f"/api/audit/studies/{UID}/access"): refused,
            ("GET", f"/api/studies/{UID}/reference-numbers"): refused,
        },
    )
    text = client.get(f"/studies/{UID}/access").text
    assert 'id="users"' in text and 'id="buckets"' in text
    assert 'id="break-glass"' not in text and 'id="reference-numbers"' not in text
    assert "only auditors" not in text

    fake.routes = {}
    assert 'id="access-nothing"' in client.get(f"/studies/{UID}/access").text


def test_withdraw_unlock_and_remove_call_the_share_apis(client: TestClient, fake: FakeAPI) -> None:
    admin_routes(fake)
    fake.routes[("DELETE", "/api/shares/bkt_1/recipients/email:x@y.org")] = httpx.Response(200)
    fake.routes[("POST", "/api/shares/bkt_1/unlock")] = httpx.Response(200, json={})
    fake.routes[("DELETE", f"/api/shares/bkt_1/studies/{UID}")] = httpx.Response(200, json={})
    token = csrf(client, f"/studies/{UID}/access")
    done = client.post(
        f"/studies/{UID}/access/withdraw",
        data={"csrf": token, "bucket": "bkt_1", "recipient": "email:x@y.org"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("/access#users")
    assert 'id="notice-users"' not in client.get("/studies/9.9/access").text  # another study
    client.post(
        f"/studies/{UID}/access/withdraw",
        data={"csrf": token, "bucket": "bkt_1", "recipient": "email:x@y.org"},
        follow_redirects=False,
    )
    assert 'id="notice-users">The access is withdrawn.' in client.get(f"/studies/{UID}/access").text
    for action in ("unlock", "remove-study"):
        client.post(f"/studies/{UID}/access/buckets/bkt_1/{action}", data={"csrf": token})
    assert fake.sent("POST", "/api/shares/bkt_1/unlock")
    assert fake.sent("DELETE", f"/api/shares/bkt_1/studies/{UID}")
    assert (
        client.post(
            f"/studies/{UID}/access/buckets/bkt_1/explode", data={"csrf": token}
        ).status_code
        == 404
    )


def test_an_action_needs_the_sessions_csrf_token(client: TestClient, fake: FakeAPI) -> None:
    admin_routes(fake)
    answer = client.post(f"/studies/{UID}/access/buckets/bkt_1/revoke", data={"csrf": "forged"})
    assert answer.status_code == 403
    assert not fake.sent("DELETE", "/api/shares/bkt_1")


def test_the_access_tab_shows_the_number_but_its_actions_name_its_id(
    client: TestClient, fake: FakeAPI
) -> None:
    """A reference number opens the study with the date of birth: the department's staff read
    it on the tab, but no URL or form action holds it (proxies log URLs), only its id."""
    admin_routes(fake)
    text = client.get(f"/studies/{UID}/access").text
    assert '<code class="id">AB12CD34</code>' in text
    actions = re.findall(r'action="([^"]*)"', text)
    assert actions and not [a for a in actions if "AB12CD34" in a]
    assert not [u for u in re.findall(r'(?:href|src)="([^"]*)"', text) if "AB12CD34" in u]
    assert f"/studies/{UID}/access/reference-numbers/{REF_ID}/pincode" in actions
    assert f"/studies/{UID}/access/reference-numbers/{REF_ID}/revoke" in actions
    assert f'data-reference="{REF_ID}"' in text

    # a number the study store cannot open (sealed under another secret): no "None"
    hidden = {**REFERENCE, "reference_number": None}
    fake.routes[("GET", f"/api/studies/{UID}/reference-numbers")] = httpx.Response(
        200, json={"items": [hidden]}
    )
    text = client.get(f"/studies/{UID}/access").text
    assert 'class="hint number-hidden"' in text and ">None<" not in text
    assert f"/studies/{UID}/access/reference-numbers/{REF_ID}/revoke" in text


def test_a_refusal_is_shown_next_to_what_was_refused(client: TestClient, fake: FakeAPI) -> None:
    admin_routes(fake)
    refs = f"/api/studies/{UID}/reference-numbers"
    fake.routes[("PUT", f"{refs}/{REF_ID}/pincode")] = problem(
        422, "InvalidRequest", "body.pincode: String should match pattern '^[0-9]{4,8}$'"
    )
    fake.routes[("POST", refs)] = problem(
        422, "ReferenceNumberValidity", "valid_to must be after valid_from"
    )
    token = csrf(client, f"/studies/{UID}/access")
    page = client.post(
        f"/studies/{UID}/access/reference-numbers/{REF_ID}/pincode",
        data={"csrf": token, "pincode": "12ab"},
    )
    assert fake.sent("PUT", f"{refs}/{REF_ID}/pincode") == [({}, {"pincode": "12ab"})]
    assert re.search(r'id="problem-pincode-1">body.pincode: String should match', page.text)
    page = client.post(
        f"/studies/{UID}/access/reference-numbers",
        data={"csrf": token, "valid_from": "2027-02-01", "valid_to": "2027-01-01"},
    )
    assert fake.sent("POST", refs)[0][1] == {
        "valid_from": "2027-01-31T23:00:00+00:00",  # days of Brussels
        "valid_to": "2027-01-01T22:59:59+00:00",
    }
    assert 'id="problem-issue">valid_to must be after valid_from' in page.text
    assert 'value="2027-02-01"' in page.text  # what was typed stays in the form


def test_the_study_logging_passes_the_filters_and_pages(client: TestClient, fake: FakeAPI) -> None:
    entry = {
        "id": "bkt_1:7",
        "seq": 7,
        "event_id": "e7",
        "event_type": "BucketLocked",
        "occurred_at": "2026-12-02T10:00:00Z",
        "actor": {"kind": "user", "id": "usr_claire"},
        "actors": ["usr_claire"],
        "category": "lock",
        "outcome": "success",
        "alert": "bucket_locked",
        "summary": "bucket locked after 5 wrong OTPs",
        "payload": {"bucket_id": "bkt_1", "failed_attempts": 5},
        "prev_hash": "p",
        "hash": "h",
    }
    log = f"/api/audit/studies/{UID}/log"
    fake.routes[("GET", log)] = httpx.Response(
        200, json={"items": [entry], "total": 101, "offset": 0, "limit": 100, "next_offset": 100}
    )
    fake.routes[("GET", "/api/users/usr_claire")] = httpx.Response(
        200, json={"user_id": "usr_claire", "first_name": "Claire", "last_name": "Story"}
    )
    page = client.get(f"/studies/{UID}/logging", params={"category": "lock", "from": "2026-12-01"})
    assert page.status_code == 200
    assert fake.sent("GET", log)[-1][0] == {
        "category": "lock",
        "from": "2026-11-30T23:00:00+00:00",  # the day begins in Brussels
        "offset": "0",
        "limit": "100",
    }
    assert "bucket locked after 5 wrong OTPs" in page.text and "Registrations: 101" in page.text
    assert "Claire Story" in page.text  # the actor by name (identity's public view)
    assert 'href="?category=lock&amp;from=2026-12-01&amp;offset=100"' in page.text
    assert "&#34;failed_attempts&#34;: 5" in page.text  # every recorded field, escaped

    fake.routes[("GET", log)] = problem(
        422,
        "InvalidRequest",
        "query.from: Input should be a valid datetime",
        errors=[{"loc": ["query", "from"], "msg": "Input should be a valid datetime"}],
    )
    page = client.get(f"/studies/{UID}/logging", params={"from": "soon"})
    assert page.status_code == 422
    assert 'id="problem-from">query.from: Input should be a valid datetime' in page.text

    fake.routes[("GET", log)] = problem(403, "AuditLogReadersOnly", "only auditors read the log")
    page = client.get(f"/studies/{UID}/logging")
    assert page.status_code == 403 and "only auditors read the log" in page.text


def test_exports_are_downloads(client: TestClient, fake: FakeAPI) -> None:
    fake.routes[("GET", "/api/audit/export/dicom")] = httpx.Response(
        200, content=b"<AuditMessages/>", headers={"content-type": "application/xml"}
    )
    answer = client.get(f"/studies/{UID}/logging/export/dicom")
    assert answer.status_code == 200 and answer.content == b"<AuditMessages/>"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="audit-{UID}.dicom.xml"'
    )
    assert fake.sent("GET", "/api/audit/export/dicom") == [({"study": UID}, None)]
    fake.routes[("GET", "/api/audit/export/fhir")] = problem(403, None, "not yours")
    refused = client.get(f"/studies/{UID}/logging/export/fhir")
    assert refused.url.path == f"/studies/{UID}/logging" and "not yours" in refused.text


def test_who_could_open_it_at_a_moment(client: TestClient, fake: FakeAPI) -> None:
    path = f"/api/audit/studies/{UID}/access-at"
    fake.routes[("GET", path)] = httpx.Response(
        200,
        json={
            "study_uid": UID,
            "at": "2026-12-02T10:00:00Z",
            "events_considered": 12,
            "could_open": [
                {"principal_kind": "user", "principal_id": "usr_claire", "via": "grant"},
                {
                    "principal_kind": "patient",
                    "principal_id": f"ref:{REF_ID}",
                    "via": "reference_number",
                    "reference_id": REF_ID,
                },
                {"principal_kind": "role", "principal_id": "service_desk", "via": "service_desk"},
            ],
        },
    )
    assert 'id="could-open"' not in client.get(f"/studies/{UID}/access-at").text
    page = client.get(f"/studies/{UID}/access-at", params={"t": "2026-12-02T11:00"})
    assert fake.sent("GET", path) == [({"t": "2026-12-02T10:00:00+00:00"}, None)]  # 11:00 CET
    assert "usr_claire" in page.text and "a reference number" in page.text
    assert '<code class="id" title="The reference number&#39;s id' in page.text
    assert f">{REF_ID}</code>" in page.text, "the auditor reads the reference's id"
    assert "at 2026-12-02 11:00:00" in page.text, "the answer's moment, as the auditor typed it"
    assert "Times are local time (Europe/Brussels)." in page.text
    assert "The patient (with their reference number)" in page.text
    assert f">ref:{REF_ID}" not in page.text, "the patient is named in words, not by an id"
    assert "Service desk" in page.text and "the service desk (sees every study)" in page.text
    assert not re.search(r">\s*(kind|via)\.", page.text), "no message key shows untranslated"


def test_alerts_and_the_chain_check(client: TestClient, fake: FakeAPI) -> None:
    fake.me = {"first_name": "Ann", "roles": ["auditor"]}
    log_in(client)
    fake.routes[("GET", "/api/audit/alerts")] = httpx.Response(
        200,
        json={
            "since": "2026-11-02T00:00:00Z",
            "until": "2026-12-02T00:00:00Z",
            "items": [
                {
                    "kind": "bucket_locked",
                    "at": "2026-12-01T10:00:00Z",
                    "until": "2026-12-01T10:00:00Z",
                    "count": 1,
                    "study_uids": [UID],
                    "entry_ids": ["bkt_1:7"],
                    "summary": "bucket locked after 5 wrong OTPs",
                }
            ],
        },
    )
    chain = {"ok": False, "checked": 9, "head_seq": 9, "head_chain_hash": "abc", "problems": []}
    broken = {**chain, "problems": [{"seq": 4, "kind": "changed", "detail": "hash differs"}]}
    fake.routes[("GET", "/api/audit/verify")] = httpx.Response(
        200, json={"ok": False, "study_log": broken, "audit_reads": {**chain, "ok": True}}
    )
    page = client.get("/audit/alerts")
    assert "bucket locked" in page.text and f'href="/studies/{UID}/logging"' in page.text
    assert 'id="nav-audit"' in page.text
    page = client.get("/audit/verify")
    assert 'data-ok="false"' in page.text and "hash differs" in page.text
    assert (
        client.get("/audit/study", params={"uid": UID}, follow_redirects=False).headers["location"]
        == f"/studies/{UID}/logging"
    )


def test_the_study_page_offers_the_tabs_the_user_may_use(client: TestClient, fake: FakeAPI) -> None:
    fake.me = {"first_name": "Pieter", "roles": ["physician"]}
    log_in(client)
    study = {"study_uid": UID, "description": "CT", "access": {"via": "department"}}
    fake.routes[("GET", f"/api/studies/{UID}")] = httpx.Response(200, json=study)
    fake.routes[("GET", "/api/shared-with-me")] = httpx.Response(200, json={"items": []})
    client.post("/language", data={"csrf": csrf(client, "/studies"), "language": "en"})
    page = client.get(f"/studies/{UID}").text
    assert 'id="tab-access"' in page and 'id="tab-logging"' not in page
    assert 'id="nav-audit"' not in page
    fake.routes[("GET", f"/api/studies/{UID}")] = httpx.Response(
        200, json={**study, "access": {"via": "grant"}}
    )
    assert 'class="tabs"' not in client.get(f"/studies/{UID}").text  # one tab: no tab bar


def test_transfers_rsw_and_reference_numbers_actions_call_the_study_store(
    client: TestClient, fake: FakeAPI
) -> None:
    q = f"/api/studies/{UID}"
    admin_routes(
        fake,
        {
            ("GET", f"{q}/rsw"): httpx.Response(200, json={"department_id": "dep_1"}),
            ("POST", f"{q}/transfers/trf_1/resend"): httpx.Response(202, json={}),
            ("POST", f"{q}/rsw"): problem(404, "NoRswEndpoint", "no RSW endpoint any more"),
            ("POST", f"{q}/reference-numbers/regenerate"): httpx.Response(200, json={"issued": []}),
            ("DELETE", f"{q}/reference-numbers/{REF_ID}"): httpx.Response(204),
        },
    )
    page = client.get(f"/studies/{UID}/access").text
    assert 'id="rsw"' in page and "Not sent to the regional health network yet." in page
    assert 'class="resend"' in page  # a failed transfer may be sent again
    token = csrf(client, f"/studies/{UID}/access")
    page = client.post(f"/studies/{UID}/access/transfers/trf_1/resend", data={"csrf": token})
    assert 'id="notice-transfers">The study is being sent again.' in page.text
    page = client.post(f"/studies/{UID}/access/rsw", data={"csrf": token})
    assert 'id="problem-rsw">no RSW endpoint any more' in page.text
    page = client.post(f"/studies/{UID}/access/reference-numbers/regenerate", data={"csrf": token})
    assert "The reference numbers are regenerated." in page.text
    page = client.post(
        f"/studies/{UID}/access/reference-numbers/{REF_ID}/revoke", data={"csrf": token}
    )
    assert "The reference number is revoked." in page.text
    for method, path in (
        ("POST", f"{q}/transfers/trf_1/resend"),
        ("POST", f"{q}/rsw"),
        ("POST", f"{q}/reference-numbers/regenerate"),
        ("DELETE", f"{q}/reference-numbers/{REF_ID}"),
    ):
        assert len(fake.sent(method, path)) == 1, path


def test_the_study_page_forwards_to_a_pacs_when_the_api_allows_download(
    client: TestClient, fake: FakeAPI
) -> None:
    fake.me = {"first_name": "Pieter", "roles": ["physician"]}
    log_in(client)
    study = {
        "study_uid": UID,
        "description": "CT thorax",
        "access": {"via": "department", "images": False, "report": "none", "download": True},
    }
    fake.routes[("GET", f"/api/studies/{UID}")] = httpx.Response(200, json=study)
    fake.routes[("GET", "/api/shared-with-me")] = httpx.Response(200, json={"items": []})
    fake.routes[("GET", "/api/pacs")] = httpx.Response(
        200, json=[{"pacs_id": "dep_pacs1", "name": "Archive North", "ae_title": "NORTH"}]
    )
    fake.routes[("POST", f"/api/studies/{UID}/forward")] = httpx.Response(
        202, json={"transfer_id": "trf_1", "destination_name": "Archive North"}
    )
    page = client.get(f"/studies/{UID}").text
    assert 'id="forward-form"' in page and 'value="dep_pacs1"' in page
    token = CSRF.search(page).group(1)
    done = client.post(
        f"/studies/{UID}/forward",
        data={"csrf": token, "pacs_id": "dep_pacs1", "bucket": ""},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/studies/{UID}"
    assert fake.sent("POST", f"/api/studies/{UID}/forward") == [({}, {"pacs_id": "dep_pacs1"})]
    assert "on its way to Archive North" in client.get(f"/studies/{UID}").text

    fake.routes[("POST", f"/api/studies/{UID}/forward")] = problem(
        403, "ForwardNotAllowed", "forwarding needs download permission on this study"
    )
    refused = client.post(f"/studies/{UID}/forward", data={"csrf": token, "pacs_id": "dep_pacs1"})
    assert "forwarding needs download permission" in refused.text  # the redirect's page

    study["access"]["download"] = False  # no download: no form, and the list is not asked
    fake.routes[("GET", f"/api/studies/{UID}")] = httpx.Response(200, json=study)
    asked = len(fake.sent("GET", "/api/pacs"))
    assert 'id="forward-form"' not in client.get(f"/studies/{UID}").text
    assert len(fake.sent("GET", "/api/pacs")) == asked
