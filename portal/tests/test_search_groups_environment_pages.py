"""Issue 16, points 4, 5 and 11 in the portal, against the fake public API: the share dialog's
"select from list" and detailed search, the lapse banner and "report a wrong composition" on
the confirmation page, the login answer's due confirmations, and the environment offered
before the password and remembered in a cookie."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from studyshare.portal.adapters.public_api import PublicAPI
from studyshare.portal.app import create_app
from studyshare.portal.settings import PortalSettings

from .test_account_pages import CSRF, FakeAPI, log_in, post


@pytest.fixture
def fake() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def client(fake: FakeAPI):
    api = PublicAPI("http://gateway.test", 5)
    api.client = httpx.AsyncClient(
        base_url="http://gateway.test", transport=httpx.MockTransport(fake)
    )
    with TestClient(
        create_app(PortalSettings(environment="test"), api=api), base_url="https://portal.test"
    ) as c:
        yield c


ENVS = {
    "current": "be",
    "environments": [
        {"code": "be", "portal_url": "https://be.studyshare.example"},
        {"code": "nl", "portal_url": "https://nl.studyshare.example"},
    ],
}
PAGE = {
    "items": [
        {"id": "usr_a", "kind": "user", "name": "Ann Aerts", "subtitle": None, "match": None},
        {"id": "grp_b", "kind": "group", "name": "Praktijk B", "subtitle": None, "match": None},
    ],
    "total": 5,
    "page": 1,
    "page_size": 2,
}


def test_select_from_list_and_the_detailed_search_ask_the_api(client: TestClient, fake: FakeAPI):
    log_in(client)
    fake.answer("GET", "/api/recipients", PAGE)
    listed = client.get("/share/recipients/list?list_kind=group")
    assert listed.status_code == 200
    assert "Ann Aerts" in listed.text and "Page 1 of 3" in listed.text
    assert "/share/recipients/list?list_kind=group&amp;page=2" in listed.text
    assert fake.sent("GET", "/api/recipients")[-1][1] == {
        "browse": "true",
        "page": "1",
        "kind": "group",
    }
    found = client.get(
        "/share/recipients/detailed?ds_last_name=Aerts&ds_registry=RIZIV&ds_kind=user&ds_email="
    )
    assert "Ann Aerts" in found.text
    assert fake.sent("GET", "/api/recipients")[-1][1] == {
        "last_name": "Aerts",
        "registry": "RIZIV",
        "kind": "user",
    }
    calls = len(fake.sent("GET", "/api/recipients"))
    assert "Ann" not in client.get("/share/recipients/detailed?ds_kind=user").text
    assert len(fake.sent("GET", "/api/recipients")) == calls, "no field: nothing asked"


def test_the_login_answer_says_a_confirmation_is_due_and_a_lapse_shows(
    client: TestClient, fake: FakeAPI
):
    fake.answer(
        "POST",
        "/api/auth/login",
        {
            "access_token": "a",
            "refresh_token": "r",
            "expires_in": 900,
            "group_confirmations_due": ["grp_1"],
        },
    )
    assert log_in(client, "/shares") == "/group-confirmations?next=%2Fshares"
    fake.answer(
        "GET",
        "/api/users/me/group-confirmations",
        [
            {
                "group_id": "grp_1",
                "name": "Praktijk Zuid",
                "primary_contact_id": "usr_a",
                "members": [],
                "confirmed_until": "2026-01-01T00:00:00Z",
                "due": True,
                "lapsed": True,
            }
        ],
    )
    page = client.get("/group-confirmations")
    assert 'id="lapsed-grp_1"' in page.text and "report-group" in page.text
    fake.answer(
        "POST",
        "/api/groups/grp_1/report-composition",
        {"group_id": "grp_1", "told": "group_admins"},
    )
    done = post(client, "/groups/grp_1/report", {"remark": "Bo left", "next": "/groups"}, "/groups")
    assert done.headers["location"] == "/groups"
    assert fake.sent("POST", "/api/groups/grp_1/report-composition") == [
        ({"remark": "Bo left"}, {})
    ]


def test_the_environment_is_offered_before_the_password_and_remembered(
    client: TestClient, fake: FakeAPI
):
    fake.answer("GET", "/api/auth/environments", ENVS)
    login = client.get("/login")
    assert 'id="environment-choice"' in login.text and 'hx-post="/login/environment"' in login.text
    csrf = CSRF.search(login.text).group(1)
    fake.answer(
        "POST",
        "/api/auth/environment",
        {"environment": "be", "portal_url": "https://be.studyshare.example", "current": True},
    )
    same = client.post("/login/environment", data={"csrf": csrf, "username": "whoever"})
    assert same.status_code == 200 and same.text == "", "unknown or here: nothing to say"
    fake.answer(
        "POST",
        "/api/auth/environment",
        {"environment": "nl", "portal_url": "https://nl.studyshare.example", "current": False},
    )
    other = client.post("/login/environment", data={"csrf": csrf, "username": "dr.nl"})
    assert 'href="https://nl.studyshare.example"' in other.text
    assert fake.sent("POST", "/api/auth/environment")[-1][0] == {"username": "dr.nl"}

    chosen = client.get("/environment?code=nl&remember=1", follow_redirects=False)
    assert chosen.headers["location"] == "https://nl.studyshare.example"
    assert client.cookies.get("studyshare_environment") == "nl"
    again = client.get("/login", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "https://nl.studyshare.example"
    stay = client.get("/login?stay=1", follow_redirects=False)
    assert stay.status_code == 200, "going back stays on this portal"
    back = client.get("/environment?code=be", follow_redirects=False)
    assert back.headers["location"] == "/login?stay=1"
    assert client.cookies.get("studyshare_environment") is None, "not remembered: forgotten"
    assert client.get("/login", follow_redirects=False).status_code == 200
