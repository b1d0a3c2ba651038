"""Sessions, CSRF, security headers, languages and the share form, without a platform: the
public API is a fake (an httpx MockTransport)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from studyshare.portal import i18n
from studyshare.portal.adapters.public_api import PublicAPI
from studyshare.portal.app import create_app
from studyshare.portal.pages.shares import share_request
from studyshare.portal.security import safe_next
from studyshare.portal.sessions import SessionStore, cookie_name
from studyshare.portal.settings import PortalSettings

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class FakeAPI:
    """The gateway's public routes the tests need; records what the portal sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
        self.refreshes = 0
        self.expired_tokens: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        token = request.headers.get("authorization", "").removeprefix("Bearer ") or None
        self.calls.append((request.method, request.url.path, body, token))
        path = request.url.path
        if path == "/api/auth/login":
            if body["password"] != "right":
                return _problem(401, "InvalidCredentials", "The username or password is wrong.")
            return httpx.Response(
                200, json={"access_token": "a1", "refresh_token": "r1", "expires_in": 900}
            )
        if path == "/api/auth/refresh":
            self.refreshes += 1
            return httpx.Response(
                200, json={"access_token": "a2", "refresh_token": "r2", "expires_in": 900}
            )
        if path == "/api/auth/logout":
            return httpx.Response(204)
        if path == "/api/auth/patient-login":
            return httpx.Response(
                200, json={"access_token": "p1", "expires_in": 900, "study_uid": "1.2.3"}
            )
        if token in self.expired_tokens:
            return _problem(401, "Unauthorized", "the access token has expired")
        if path == "/api/users/me":
            if request.method == "PATCH":
                return httpx.Response(200, json={"language": body["language"]})
            return httpx.Response(200, json={"first_name": "Pieter", "language": "nl"})
        if path in ("/api/studies", "/api/shared-with-me"):
            return httpx.Response(200, json={"items": [], "total": 0})
        if path.endswith("/otp/verify"):
            return _problem(401, "WrongOTP", "wrong, expired or already used code (1 of 5)")
        if path == "/api/studies/1.2.3.colleagues":  # one the caller may break the glass on
            return _problem(403, "NoAccessToStudy", "you have no access to this study")
        if path == "/api/studies/1.2.3.revoked":
            return _problem(403, "GrantRevoked", "your access was revoked (bucket bkt_1)")
        return _problem(404, None, "nothing here")


def _problem(status: int, rule: str | None, detail: str) -> httpx.Response:
    body = {"status": status, "title": "refused", "detail": detail}
    if rule:
        body["rule"] = rule
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


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
        yield c


def csrf_of(client: TestClient, path: str = "/login") -> str:
    return CSRF.search(client.get(path).text).group(1)


def log_in(client: TestClient, next_url: str = "/studies") -> None:
    token = csrf_of(client)
    answer = client.post(
        "/login",
        data={"csrf": token, "username": "pieter", "password": "right", "next": next_url},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == next_url


def test_every_page_carries_the_security_headers(client: TestClient) -> None:
    answer = client.get("/login")
    assert answer.status_code == 200
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert answer.headers["cache-control"] == "no-store"
    assert "<script>" not in answer.text and " style=" not in answer.text


def test_the_session_cookie_is_opaque_httponly_lax_and_secure_outside_development(
    client: TestClient,
) -> None:
    cookie = client.get("/login").headers["set-cookie"]
    assert cookie.startswith("__Host-studyshare_session=")  # this host's alone (over HTTPS)
    assert "domain=" not in cookie.lower() and "path=/" in cookie.lower()
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) >= 40 and "." not in value  # random, not a token or a signed payload
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" in flags


def test_development_cookies_are_not_secure() -> None:
    assert PortalSettings(environment="development").secure_cookies is False
    assert PortalSettings(environment="test").secure_cookies
    assert cookie_name(False) == "studyshare_session"  # a browser keeps __Host- only Secure


def test_a_form_without_the_sessions_csrf_token_is_refused(client: TestClient, fake: FakeAPI):
    csrf_of(client)
    for data in ({"username": "pieter", "password": "right"}, {"csrf": "forged"}):
        answer = client.post("/login", data=data, follow_redirects=False)
        assert answer.status_code == 403
    assert not [c for c in fake.calls if c[1] == "/api/auth/login"]


def test_login_keeps_tokens_server_side_rotates_the_session_and_goes_back(
    client: TestClient, fake: FakeAPI
) -> None:
    before = csrf_of(client)
    cookie_before = client.cookies.get(cookie_name(True))
    log_in(client, "/studies/1.2.3?bucket=bkt_1")
    assert client.cookies.get(cookie_name(True)) != cookie_before  # a new id at login (no fixation)
    assert csrf_of(client, "/studies") != before
    # the access token stays on the server (a substring test of a random id fails 1 in ~100)
    assert "a1" not in client.cookies.values()
    page = client.get("/studies")
    assert page.status_code == 200
    assert 'lang="nl"' in page.text  # the user's language from GET /api/users/me
    assert ("GET", "/api/studies", None, "a1") in fake.calls


def test_bad_credentials_show_the_apis_detail(client: TestClient) -> None:
    token = csrf_of(client)
    answer = client.post("/login", data={"csrf": token, "username": "x", "password": "wrong"})
    assert answer.status_code == 401
    assert "The username or password is wrong." in answer.text


def test_an_expired_access_token_is_refreshed_once(client: TestClient, fake: FakeAPI) -> None:
    log_in(client)
    fake.expired_tokens.add("a1")
    assert client.get("/studies").status_code == 200
    assert fake.refreshes == 1
    assert ("GET", "/api/studies", None, "a2") in fake.calls


def test_a_wrong_one_time_code_is_no_expired_session(client: TestClient, fake: FakeAPI) -> None:
    log_in(client)
    token = csrf_of(client, "/studies")
    answer = client.post(
        "/studies/1.2.3/otp/verify", data={"csrf": token, "bucket": "bkt_1", "code": "1"}
    )
    assert fake.refreshes == 0
    assert len([c for c in fake.calls if c[1].endswith("/otp/verify")]) == 1
    assert "1 of 5" in answer.text


def test_logout_ends_the_session_at_identity(client: TestClient, fake: FakeAPI) -> None:
    log_in(client)
    token = csrf_of(client, "/studies")
    answer = client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert answer.headers["location"] == "/login"
    assert ("POST", "/api/auth/logout", {"refresh_token": "r1"}, "a1") in fake.calls
    assert client.get("/studies", follow_redirects=False).status_code == 303


def test_a_patients_logout_ends_the_session_at_identity(client: TestClient, fake: FakeAPI):
    """A patient token has no refresh token: the bearer token names the session to end."""
    login = client.post(
        "/patient-login",
        data={
            "csrf": csrf_of(client, "/patient-login"),
            "reference_number": "AB12CD34EF",
            "date_of_birth": "1980-02-14",
        },
        follow_redirects=False,
    )
    assert login.headers["location"] == "/studies/1.2.3"
    token = csrf_of(client, "/patient-login")
    answer = client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert answer.headers["location"] == "/patient-login", "back where the patient came in"
    assert ("POST", "/api/auth/logout", {"refresh_token": None}, "p1") in fake.calls


def test_pages_need_a_login_and_come_back_after_it(client: TestClient) -> None:
    answer = client.get("/studies/1.2.3?bucket=bkt_1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fstudies%2F1.2.3%3Fbucket%3Dbkt_1"


def test_the_language_switcher_and_accept_language(client: TestClient) -> None:
    assert 'lang="fr"' in client.get("/login", headers={"Accept-Language": "fr-BE,nl;q=0.5"}).text
    token = csrf_of(client)
    client.post("/language", data={"csrf": token, "language": "de", "next": "/login"})
    assert "Bei StudyShare anmelden" in client.get("/login").text


def test_only_local_paths_are_followed_after_login() -> None:
    assert safe_next("/studies/1?bucket=b") == "/studies/1?bucket=b"
    for hostile in ("https://evil.example", "//evil.example", "/\\evil.example", None, "x"):
        assert safe_next(hostile) == "/studies"


@pytest.mark.parametrize(
    "hostile",
    [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/\r\n/evil.example",
        "/ /evil.example",
        "/\x00/evil.example",
        "/\x0b/evil.example",
        "/\x7f/evil.example",
        "/studies\t",
        "/studies/1\\..\\evil",
    ],
)
def test_a_path_with_a_control_character_whitespace_or_backslash_is_not_followed(
    hostile: str,
) -> None:
    """Browsers drop TAB, LF and CR from a URL (`/\t/evil.example` is `//evil.example`)."""
    assert safe_next(hostile) == "/studies"


def test_hsts_is_sent_with_secure_cookies(client: TestClient) -> None:
    answer = client.get("/login")
    assert answer.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_no_hsts_in_local_development_over_http(fake: FakeAPI) -> None:
    api = PublicAPI("http://gateway.test", 5)
    api.client = httpx.AsyncClient(
        base_url="http://gateway.test", transport=httpx.MockTransport(fake)
    )
    app = create_app(PortalSettings(environment="development"), api=api)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        answer = client.get("/login")
    assert answer.status_code == 200
    assert "strict-transport-security" not in answer.headers
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_catalogues_are_complete_in_every_language() -> None:
    keys = set(i18n.MESSAGES["en"])
    for language in i18n.LANGUAGES:
        assert set(i18n.MESSAGES[language]) == keys, language
        for key, text in i18n.MESSAGES[language].items():
            fields = set(re.findall(r"{(\w+)}", text))
            assert fields == set(re.findall(r"{(\w+)}", i18n.MESSAGES["en"][key])), key
    assert i18n.from_accept_language("de-CH;q=0.4, nl-BE") == "nl"
    assert i18n.from_accept_language("ja") == "en"


def test_sessions_end_when_idle() -> None:
    store = SessionStore(idle_s=60, max_sessions=2)
    session = store.new()
    assert store.get(session.id) is session
    session.touched = time.monotonic() - 61
    assert store.get(session.id) is None
    a, _, c = store.new(), store.new(), store.new()
    assert store.get(a.id) is None and store.get(c.id) is c


def test_no_number_of_anonymous_visits_logs_a_user_out(fake: FakeAPI) -> None:
    """Every cookie-less request once made a session in one store of `portal_session_max`,
    oldest out first: anyone, logged in or not, logged every user out with as many requests
    (for `/static/portal.css`, say). Logged-in sessions are kept apart now, and files and
    health checks make none."""
    api = PublicAPI("http://gateway.test", 5)
    api.client = httpx.AsyncClient(
        base_url="http://gateway.test", transport=httpx.MockTransport(fake)
    )
    app = create_app(PortalSettings(environment="test", portal_session_max=3), api=api)
    with TestClient(app, base_url="https://portal.test") as user:
        log_in(user)
        stranger = TestClient(app, base_url="https://portal.test")
        for _ in range(10):
            stranger.cookies.clear()
            assert stranger.get("/login").status_code == 200
        page = user.get("/studies", follow_redirects=False)
        assert page.status_code == 200, "still logged in"
        for path in ("/static/portal.css", "/healthz", "/metrics"):
            answer = stranger.get(path)
            assert answer.status_code == 200 and "set-cookie" not in answer.headers, path
            assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_share_form_becomes_the_apis_share_request() -> None:
    body = share_request(
        {
            "study": ["1.2.3"],
            "recipient": ["user:usr_1:Claire Story"],
            "email": ["new@example.org"],
            "access_level": ["images_report_read"],
            "reason": ["second opinion"],
            "patient_agreed": ["on"],
            "two_factor": ["on"],
            "valid_until": ["2027-01-31"],
            "label": ["lung"],
            "label_scope": ["group"],
            "message": ["Please look"],
            "hipaa_confirmed": ["on"],
            "include_uploaded_together": ["on"],
            "favorite": ["usr_1", "usr_not_chosen"],
        }
    )
    assert body["recipients"] == [
        {"kind": "user", "id": "usr_1"},
        {"kind": "email", "email": "new@example.org"},
    ]
    assert body["two_factor"] is True and body["send_mail"] is False
    assert body["anonymize"] is False and body["patient_agreed"] is True
    # the date itself: the API ends it in the sending department's time zone
    assert body["valid_until"] == "2027-01-31"
    assert body["label"] == {"text": "lung", "scope": "group"}
    assert body["message"] == "Please look"
    assert body["hipaa_confirmed"] is True and body["include_uploaded_together"] is True
    assert body["add_to_favorites"] == ["usr_1"], "only a chosen recipient's star counts"


def test_the_dialogs_default_date_is_one_calendar_month_or_the_policys_days() -> None:
    from datetime import date

    from studyshare.portal.pages.shares import _default_until

    assert _default_until(date(2027, 1, 31), {}) == date(2027, 2, 28)
    assert _default_until(date(2027, 1, 31), {"default_validity_months": 3}) == date(2027, 4, 30)
    assert _default_until(date(2027, 1, 31), {"default_validity_days": 7}) == date(2027, 2, 7)
    months = {"default_validity_days": None, "default_validity_months": 1}
    assert _default_until(date(2026, 12, 15), months) == date(2027, 1, 15)


def test_a_study_one_cannot_open_offers_the_glass_only_to_whom_the_api_told_it_exists(
    client: TestClient,
) -> None:
    """The API answers a study the caller has no way into as an unknown one (404): the page
    says so and offers nothing; one they may break the glass on (403 NoAccessToStudy) offers
    the form; a revoked grant tells why, and never offers the glass over it."""
    log_in(client)
    unknown = client.get("/studies/9.9.9")
    assert unknown.status_code == 404
    assert "Dit onderzoek bestaat niet, of u kunt het niet openen." in unknown.text  # nl
    assert 'id="break-glass"' not in unknown.text
    colleagues = client.get("/studies/1.2.3.colleagues")
    assert colleagues.status_code == 403
    assert 'id="break-glass"' in colleagues.text
    revoked = client.get("/studies/1.2.3.revoked")
    assert revoked.status_code == 403 and "your access was revoked" in revoked.text
    assert 'id="break-glass"' not in revoked.text
