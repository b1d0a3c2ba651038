"""The account pages against a fake public API: what each page asks the API, and that the
API's answers and refusals (beside their field) are what the page shows."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from studyshare.portal.adapters.public_api import PublicAPI
from studyshare.portal.app import create_app
from studyshare.portal.pages.profile import qr_svg
from studyshare.portal.settings import PortalSettings

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
OTPAUTH = "otpauth://totp/StudyShare:dr.peeters?secret=JBSWY3DPEHPK3PXP&issuer=StudyShare"


def problem(status: int, rule: str | None, detail: str, **extra: Any) -> httpx.Response:
    body = {"status": status, "title": "refused", "detail": detail, **extra}
    if rule:
        body["rule"] = rule
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


class FakeAPI:
    """Answers per (method, path); records every call with its body and query."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []
        self.me: dict[str, Any] = {
            "user_id": "usr_me",
            "username": "dr.peeters",
            "first_name": "Jan",
            "last_name": "Peeters",
            "language": "en",
            "roles": ["physician"],
            "totp_enabled": False,
        }
        self.answers: dict[tuple[str, str], httpx.Response] = {}

    def answer(self, method: str, path: str, response: httpx.Response | Any) -> None:
        if not isinstance(response, httpx.Response):
            response = httpx.Response(200, json=response)
        self.answers[(method, path)] = response

    def sent(self, method: str, path: str) -> list[tuple[Any, dict[str, str]]]:
        return [(body, query) for m, p, body, query in self.calls if (m, p) == (method, path)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.calls.append((request.method, path, body, dict(request.url.params)))
        if (request.method, path) in self.answers:
            return self.answers[(request.method, path)]
        if path == "/api/auth/login":
            return httpx.Response(
                200, json={"access_token": "a1", "refresh_token": "r1", "expires_in": 900}
            )
        if path == "/api/users/me":
            return httpx.Response(200, json=self.me)
        if path == "/api/auth/external":
            return httpx.Response(200, json={"providers": []})
        if path in ("/api/users/me/group-confirmations", "/api/users/me/group-invitations"):
            return httpx.Response(200, json=[])
        if path in ("/api/studies", "/api/shared-with-me"):
            return httpx.Response(200, json={"items": [], "total": 0})
        return problem(404, None, "nothing here")


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


def log_in(client: TestClient, next_url: str = "/studies") -> str:
    answer = client.post(
        "/login",
        data={"csrf": csrf_of(client), "username": "u", "password": "p", "next": next_url},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def post(client: TestClient, path: str, data: dict[str, Any], page: str = "/studies"):
    return client.post(path, data={"csrf": csrf_of(client, page), **data}, follow_redirects=False)


def test_the_invitation_link_opens_the_registration_prefilled(client: TestClient) -> None:
    page = client.get("/register?email=new%40example.org&bucket=bkt_1&token=tok-1")
    assert page.status_code == 200
    assert 'value="new@example.org"' in page.text and 'value="bkt_1"' in page.text
    assert 'name="token" value="tok-1"' in page.text
    assert 'id="invited"' in page.text
    assert (
        "/login?next=%2Fregister%3Femail%3Dnew%2540example.org%26bucket%3Dbkt_1%26token%3Dtok-1"
        in page.text
    ), "after logging in, back to the link with its token"


def test_accepting_an_invitation_sends_the_token_of_the_mail_link(
    client: TestClient, fake: FakeAPI
) -> None:
    log_in(client)
    page = client.get("/register?email=new%40example.org&bucket=bkt_1&token=tok-1")
    assert 'id="accept-invitation"' in page.text and 'name="token" value="tok-1"' in page.text
    fake.answer(
        "POST",
        "/api/shares/bkt_1/accept-invitation",
        problem(403, "InvitationLinkRequired", "open the link of the invitation mail"),
    )
    refused = post(
        client,
        "/invitations/bkt_1/accept",
        {"email": "new@example.org", "token": "tok-1"},
        "/register?email=new%40example.org&bucket=bkt_1&token=tok-1",
    )
    assert refused.status_code == 403 and "open the link of the invitation mail" in refused.text
    assert [b for b, _ in fake.sent("POST", "/api/shares/bkt_1/accept-invitation")] == [
        {"token": "tok-1"}
    ]


def test_registration_sends_the_form_and_shows_refusals_beside_their_field(
    client: TestClient, fake: FakeAPI
) -> None:
    fake.answer(
        "POST",
        "/api/users/register",
        problem(
            422,
            "InvalidRequest",
            "body.password: too short",
            errors=[{"loc": ["body", "password"], "msg": "String should have at least 10 chars"}],
        ),
    )
    form = {
        "username": "dr.new",
        "password": "short",
        "first_name": "Nele",
        "last_name": "Nieuw",
        "email": "new@example.org",
        "mobile": "+32 470 12 34 56",
        "language": "nl",
        "registry": "RIZIV",
        "physician_number": " 1-23456-78-901 ",
        "bucket": "bkt_1",
        "token": "tok-1",
    }
    refused = post(client, "/register", form, "/register")
    assert refused.status_code == 422
    assert 'id="error-password"' in refused.text and "at least 10 chars" in refused.text
    assert 'value="Nieuw"' in refused.text, "the form keeps what was typed"
    [(body, _)] = fake.sent("POST", "/api/users/register")
    assert body["physician_numbers"] == [{"registry": "RIZIV", "number": "1-23456-78-901"}]
    assert body["language"] == "nl" and body["email"] == "new@example.org"

    fake.answer("POST", "/api/users/register", httpx.Response(201, json={"user_id": "usr_new"}))
    fake.answer(
        "POST", "/api/users/register", httpx.Response(201, json={"user_id": "usr_new", "id": "x"})
    )
    done = post(client, "/register", {**form, "password": "a-long-password-1"}, "/register")
    assert done.status_code == 201 and 'id="registered"' in done.text
    assert "%2Fregister%3Femail%3Dnew%2540example.org%26bucket%3Dbkt_1%26token%3Dtok-1" in done.text


def test_a_login_of_another_environment_links_to_its_portal(
    client: TestClient, fake: FakeAPI
) -> None:
    fake.answer(
        "POST",
        "/api/auth/login",
        problem(
            421,
            "WrongEnvironment",
            "this account belongs to environment nl",
            environment="nl",
            portal_url="https://nl.studyshare.example",
        ),
    )
    page = post(client, "/login", {"username": "dr.nl", "password": "right"}, "/login")
    assert page.status_code == 421
    assert 'href="https://nl.studyshare.example"' in page.text and "NL" in page.text


def test_the_login_offers_the_identity_providers_and_starts_their_login(
    client: TestClient, fake: FakeAPI
) -> None:
    fake.answer("GET", "/api/auth/external", {"providers": [{"name": "be-eid", "label": "eID"}]})
    page = client.get("/login?next=/groups")
    assert 'href="/login/eid/be-eid?next=/groups"' in page.text
    fake.answer(
        "GET",
        "/api/auth/external/be-eid/start",
        {"authorization_url": "https://eid.example/authorize?state=s1", "state": "s1"},
    )
    start = client.get("/login/eid/be-eid?next=/groups", follow_redirects=False)
    assert start.headers["location"] == "https://eid.example/authorize?state=s1"
    [(_, query)] = fake.sent("GET", "/api/auth/external/be-eid/start")
    assert query["redirect_uri"].endswith("/login/eid/be-eid/callback")
    fake.answer(
        "GET",
        "/api/auth/external/be-eid/callback",
        problem(401, "TOTPRequired", "enter your code", login_ticket="t1"),
    )
    client.get("/login/eid/be-eid?next=/groups", follow_redirects=False)
    foreign = client.get("/login/eid/be-eid/callback?state=someone-elses&code=c")
    assert foreign.status_code == 401, "only the state this browser started comes back"
    assert not fake.sent("GET", "/api/auth/external/be-eid/callback")
    client.get("/login/eid/be-eid?next=/groups", follow_redirects=False)
    step = client.get("/login/eid/be-eid/callback?state=s1&code=c")
    assert 'id="eid-totp-form"' in step.text
    fake.answer(
        "POST",
        "/api/auth/external/be-eid/totp",
        httpx.Response(200, json={"access_token": "a9", "refresh_token": "r9", "expires_in": 900}),
    )
    done = client.post(
        "/login/eid/be-eid/totp",
        data={"csrf": CSRF.search(step.text).group(1), "otp": "123456"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/groups"
    [(body, _)] = fake.sent("POST", "/api/auth/external/be-eid/totp")
    assert body == {"login_ticket": "t1", "otp": "123456"}
    replayed = client.get("/login/eid/be-eid/callback?state=s1&code=c")
    assert replayed.status_code == 401, "a callback the portal did not start is refused"


def test_linking_an_identity_starts_only_from_the_profiles_form(
    client: TestClient, fake: FakeAPI
) -> None:
    """A link (`/login/eid/be-eid?link=true`) once started linking for a logged-in user: a
    page or a mail could have them link the identity their browser was signed in with at the
    provider (an attacker's, on a shared workstation). Linking is a form with the session's
    CSRF token now; the link starts a login at most."""
    fake.answer("GET", "/api/auth/external", {"providers": [{"name": "be-eid", "label": "eID"}]})
    fake.answer(
        "GET",
        "/api/auth/external/be-eid/start",
        {"authorization_url": "https://eid.example/authorize?state=s1", "state": "s1"},
    )
    fake.answer(
        "POST",
        "/api/auth/external/be-eid/link/start",
        {"authorization_url": "https://eid.example/authorize?state=s2", "state": "s2"},
    )
    fake.answer("POST", "/api/auth/external/be-eid/link", httpx.Response(204))
    log_in(client)
    lured = client.get("/login/eid/be-eid?link=true", follow_redirects=False)
    assert lured.status_code == 303
    client.get("/login/eid/be-eid/callback?state=s1&code=c", follow_redirects=False)
    assert not fake.sent("POST", "/api/auth/external/be-eid/link"), "a link links nothing"
    forged = client.post("/login/eid/be-eid/link", data={"csrf": "x"}, follow_redirects=False)
    assert forged.status_code == 403
    started = post(client, "/login/eid/be-eid/link", {"current_password": "pw"})
    assert started.headers["location"] == "https://eid.example/authorize?state=s2"
    [(start, _)] = fake.sent("POST", "/api/auth/external/be-eid/link/start")
    assert start["current_password"] == "pw", "the account holder's password"
    linked = client.get("/login/eid/be-eid/callback?state=s2&code=c", follow_redirects=False)
    assert linked.headers["location"] == "/profile"
    [(body, _)] = fake.sent("POST", "/api/auth/external/be-eid/link")
    assert body == {"state": "s2", "code": "c"}


def test_a_wrong_password_links_no_identity_and_says_so_beside_the_field(
    client: TestClient, fake: FakeAPI
) -> None:
    fake.answer("GET", "/api/auth/external", {"providers": [{"name": "be-eid", "label": "eID"}]})
    fake.answer(
        "POST",
        "/api/auth/external/be-eid/link/start",
        httpx.Response(
            401, json={"status": 401, "rule": "InvalidCredentials", "detail": "wrong password"}
        ),
    )
    log_in(client)
    page = post(client, "/login/eid/be-eid/link", {"current_password": "guess"})
    assert page.status_code == 401
    assert 'id="eid-link"' in page.text and "wrong password" in page.text
    client.get("/login/eid/be-eid/callback?state=s2&code=c", follow_redirects=False)
    assert not fake.sent("POST", "/api/auth/external/be-eid/link"), "nothing was started"


def test_a_due_group_confirmation_comes_first_after_login(
    client: TestClient, fake: FakeAPI
) -> None:
    group = {
        "group_id": "grp_1",
        "name": "Praktijk Zuid",
        "primary_contact_id": "usr_a",
        "members": [
            {
                "user_id": "usr_b",
                "first_name": "Bo",
                "last_name": "B",
                "admin": False,
                "primary_contact": False,
            },
            {
                "user_id": "usr_a",
                "first_name": "An",
                "last_name": "A",
                "admin": True,
                "primary_contact": True,
            },
        ],
        "confirmed_until": "2026-01-01T00:00:00Z",
        "due": True,
    }
    fake.answer("GET", "/api/users/me/group-confirmations", [group])
    assert log_in(client, "/shares") == "/group-confirmations?next=%2Fshares"
    page = client.get("/group-confirmations?next=%2Fshares")
    assert "Praktijk Zuid" in page.text and 'class="primary confirm-group"' in page.text
    assert "<strong>An A</strong>" in page.text, "administrators in bold"
    fake.answer("POST", "/api/groups/grp_1/confirm-membership", {"group_id": "grp_1"})
    back = client.post(
        "/groups/grp_1/confirm",
        data={"csrf": CSRF.search(page.text).group(1), "next": "/group-confirmations?next=%2Fs"},
        follow_redirects=False,
    )
    assert back.headers["location"] == "/group-confirmations?next=%2Fs"


def test_the_continue_link_after_the_confirmations_stays_on_this_site(
    client: TestClient, fake: FakeAPI
) -> None:
    """`/\t/evil.example` is `//evil.example` to a browser, which drops the TAB."""
    group = {
        "group_id": "grp_1",
        "name": "Praktijk Zuid",
        "primary_contact_id": "usr_me",
        "members": [],
        "confirmed_until": "2026-01-01T00:00:00Z",
        "due": True,
    }
    fake.answer("GET", "/api/users/me/group-confirmations", [group])
    log_in(client)
    page = client.get("/group-confirmations?next=%2F%09%2Fevil.example")
    assert page.status_code == 200
    [continue_link] = re.findall(r'<a [^>]*id="continue"', page.text)
    assert 'href="/studies"' in continue_link, continue_link
    assert "\t/evil.example" not in page.text, "the raw value is nowhere on the page"
    client.post("/logout", data={"csrf": csrf_of(client, "/studies")})
    assert log_in(client, "/\t/evil.example") == "/group-confirmations?next=%2Fstudies"


def test_the_profile_enrols_totp_with_a_qr_code_drawn_here(
    client: TestClient, fake: FakeAPI
) -> None:
    log_in(client)
    fake.answer(
        "POST",
        "/api/users/me/totp",
        problem(401, "InvalidCredentials", "the current password is not correct"),
    )
    wrong = post(client, "/profile/totp", {"current_password": "not it"}, "/profile")
    assert wrong.status_code == 401
    assert re.search(
        r'id="error-totp_password"[^>]*>the current password is not correct', wrong.text
    )
    fake.answer(
        "POST", "/api/users/me/totp", {"secret": "JBSWY3DPEHPK3PXP", "otpauth_uri": OTPAUTH}
    )
    started = post(client, "/profile/totp", {"current_password": "my-password-2026"}, "/profile")
    assert started.status_code == 303
    assert [b for b, _ in fake.sent("POST", "/api/users/me/totp")][-1] == {
        "current_password": "my-password-2026"
    }
    page = client.get("/profile")
    assert '<svg xmlns="http://www.w3.org/2000/svg" viewBox=' in page.text
    assert "JBSWY3DPEHPK3PXP" in page.text
    assert " style=" not in page.text and "<script>" not in page.text, "the CSP allows neither"
    fake.answer(
        "POST",
        "/api/users/me/totp/confirm",
        problem(403, "InvalidTOTPCode", "the code is wrong or was already used"),
    )
    wrong = post(client, "/profile/totp/confirm", {"code": "000000"}, "/profile")
    assert wrong.status_code == 403
    assert re.search(r'id="error-totp_code"[^>]*>the code is wrong', wrong.text)
    fake.answer("POST", "/api/users/me/totp/confirm", httpx.Response(204))
    assert post(client, "/profile/totp/confirm", {"code": "123456"}, "/profile").status_code == 303
    assert [b for b, _ in fake.sent("POST", "/api/users/me/totp/confirm")][-1] == {"code": "123456"}


def test_qr_codes_are_plain_svg() -> None:
    svg = str(qr_svg(OTPAUTH))
    assert svg.startswith("<svg") and "<path" in svg and "style" not in svg
    assert 'viewBox="0 0 ' in svg and "width=" not in svg, "scales with the page, never cropped"


def test_language_password_and_mobile_go_to_their_routes(client: TestClient, fake: FakeAPI):
    log_in(client)
    fake.answer("PATCH", "/api/users/me", {**fake.me, "language": "de"})
    assert post(client, "/profile/language", {"language": "de"}, "/profile").status_code == 303
    assert fake.sent("PATCH", "/api/users/me")[-1][0] == {"language": "de"}
    assert 'lang="de"' in client.get("/profile").text
    mismatch = post(
        client,
        "/profile/password",
        {"current_password": "old", "new_password": "a-long-one-12", "new_password_again": "x"},
        "/profile",
    )
    assert mismatch.status_code == 422 and not fake.sent("POST", "/api/users/me/password")
    fake.answer(
        "POST", "/api/users/me/password", problem(401, "InvalidCredentials", "wrong password")
    )
    refused = post(
        client,
        "/profile/password",
        {
            "current_password": "bad",
            "new_password": "a-long-one-12",
            "new_password_again": "a-long-one-12",
        },
        "/profile",
    )
    assert re.search(r'id="error-current_password"[^>]*>wrong password', refused.text)
    fake.answer(
        "POST", "/api/users/me/mobile", httpx.Response(202, json={"expires_at": "2026-01-01"})
    )
    sent = post(
        client, "/profile/mobile", {"mobile": "+32470999999", "current_password": "p"}, "/profile"
    )
    assert sent.status_code == 303
    assert 'id="mobile-confirm-form"' in client.get("/profile").text


def test_the_desk_lists_what_waits_and_refuses_others(client: TestClient, fake: FakeAPI):
    log_in(client)
    fake.answer("GET", "/api/users/pending", problem(403, "NotAllowed", "service desk only"))
    assert client.get("/desk").status_code == 403
    fake.answer(
        "GET",
        "/api/users/pending",
        [
            {
                "user_id": "usr_p",
                "first_name": "Piet",
                "last_name": "P",
                "username": "dr.p",
                "profession": "physician",
            }
        ],
    )
    fake.answer(
        "GET",
        "/api/users/locked",
        [
            {
                "user_id": "usr_l",
                "first_name": "Lot",
                "last_name": "L",
                "username": "dr.l",
                "locked_until": "2026-05-01T08:00:30",
                "failures": 5,
            }
        ],
    )
    fake.answer(
        "GET",
        "/api/groups/invitations",
        [
            {
                "group_id": "grp_1",
                "group_name": "Zuid",
                "user_id": "usr_i",
                "user_name": "Ivo",
                "invited_by": "usr_a",
                "invited_by_name": "An",
                "admin": False,
                "invited_at": "2026-01-01T00:00:00Z",
            }
        ],
    )
    fake.answer("GET", "/api/users", {"items": []})
    page = client.get("/desk?q=dr.x")
    assert page.status_code == 200
    for text in ("Piet P", "Lot L", "Ivo in Zuid", "No account found."):
        assert text in page.text
    assert fake.sent("GET", "/api/users")[-1][1] == {"q": "dr.x"}
    fake.answer("POST", "/api/users/usr_l/unlock", httpx.Response(204))
    done = post(client, "/users/usr_l/unlock", {"next": "/desk"}, "/desk")
    assert done.headers["location"] == "/desk"


def test_study_list_filters_are_the_apis_query_parameters(client: TestClient, fake: FakeAPI):
    log_in(client)
    client.get("/studies?q=thorax&modality=CT&date_from=2026-01-01&urgent=on&label=lung")
    assert fake.sent("GET", "/api/studies")[-1][1] == {
        "q": "thorax",
        "modality": "CT",
        "date_from": "2026-01-01",
    }
    assert fake.sent("GET", "/api/shared-with-me")[-1][1] == {"urgent": "true", "label": "lung"}


def test_colleagues_studies_are_those_the_api_opens_through_a_group(
    client: TestClient, fake: FakeAPI
) -> None:
    def study(uid: str, via: str, bucket: str | None = None) -> dict[str, Any]:
        return {
            "study_uid": uid,
            "description": f"study {uid}",
            "access": {"via": via, "bucket_id": bucket},
        }

    fake.answer(
        "GET",
        "/api/studies",
        {
            "items": [
                study("1", "department"),
                study("2", "group", "bkt_c"),
                study("3", "group", "bkt_mine"),
            ]
        },
    )
    fake.answer(
        "GET",
        "/api/shared-with-me",
        {
            "items": [
                {
                    "bucket_id": "bkt_mine",
                    "study_uid": "3",
                    "description": "study 3",
                    "sender": {"id": "u"},
                }
            ]
        },
    )
    log_in(client)
    page = client.get("/studies").text
    colleagues = page[page.index('id="colleague-studies"') : page.index('id="shared-studies"')]
    assert "study 2" in colleagues and "study 3" not in colleagues and "study 1" not in colleagues


def test_a_study_without_a_description_is_named_in_words_not_by_its_uid(
    client: TestClient, fake: FakeAPI
) -> None:
    """An anonymized share shows no description: its UID made an unreadable title."""
    fake.answer("GET", "/api/studies", {"items": []})
    fake.answer(
        "GET",
        "/api/shared-with-me",
        {
            "items": [
                {
                    "bucket_id": "bkt_anon",
                    "study_uid": "2.25.1234567890",
                    "description": None,
                    "anonymize": True,
                    "sender": {"id": "u"},
                },
                {
                    "bucket_id": "bkt_clear",
                    "study_uid": "1.2.3.4",
                    "description": None,
                    "sender": {"id": "u"},
                },
            ]
        },
    )
    log_in(client)
    titles = re.findall(r'<a class="title" [^>]*>([^<]*)</a>', client.get("/studies").text)
    assert titles == ["Anonymized study", "Study without a description"]


def test_the_share_dialog_follows_the_department_policy_and_the_favourites(
    client: TestClient, fake: FakeAPI
) -> None:
    fake.answer(
        "GET",
        "/api/studies/1.2.3",
        {"study_uid": "1.2.3", "department_id": "dep_1", "access": {"download": False}},
    )
    fake.answer(
        "GET",
        "/api/departments/dep_1",
        {
            "policy": {
                "default_validity_days": 7,
                "max_validity_days": 14,
                "unlimited_allowed": False,
                "hipaa_confirmation_required": True,
            }
        },
    )
    fake.answer(
        "GET",
        "/api/favorites",
        [
            {
                "favorite_id": "fav_user_usr_f",
                "recipient_id": "usr_f",
                "kind": "user",
                "name": "Fien Fav",
            }
        ],
    )
    fake.answer("GET", "/api/share-preferences", {"two_factor": True, "send_mail": False})
    log_in(client)
    page = client.get("/share?study=1.2.3").text
    assert 'name="hipaa_confirmed"' in page
    assert 'name="unlimited"' not in page, "the department forbids unlimited access"
    assert 'name="allow_download"' not in page, "nobody allows more than they hold"
    assert 'max="' in page and "Fien Fav" in page
    assert "Valid 7 days by default" in page
    assert re.search(r'name="two_factor" checked', page)
    assert not re.search(r'name="send_mail" checked', page)
    fake.answer(
        "POST",
        "/api/shares",
        problem(422, "HipaaConfirmationRequired", "confirm you abide by HIPAA"),
    )
    refused = post(
        client,
        "/share",
        {
            "study": "1.2.3",
            "recipient": "user:usr_f:Fien Fav",
            "reason": "r",
            "patient_agreed": "on",
            "favorite": "usr_f",
        },
        "/share?study=1.2.3",
    )
    assert refused.status_code == 422
    hipaa = refused.text.index('name="hipaa_confirmed"')
    assert refused.text.index('id="share-problem"') > hipaa, "the reason beside the checkbox"
    assert fake.sent("POST", "/api/shares")[-1][0]["add_to_favorites"] == ["usr_f"]


def test_my_shares_lists_the_api_s_buckets(client: TestClient, fake: FakeAPI) -> None:
    fake.answer(
        "GET",
        "/api/shares/sent",
        {
            "items": [
                {
                    "bucket_id": "bkt_9",
                    "status": "active",
                    "locked": True,
                    "urgent": False,
                    "two_factor": True,
                    "anonymize": False,
                    "unlimited": True,
                    "studies": [{"study_uid": "1", "description": "CT thorax"}],
                    "recipients": [
                        {"recipient_id": "usr_r", "name": "Rita", "revoked": False, "opened": True}
                    ],
                    "shared_at": "2026-02-01T10:00:00Z",
                    "message": "left lung",
                    "message_state": "read",
                }
            ],
            "total": 1,
            "limit": 50,
            "offset": 0,
        },
    )
    log_in(client)
    page = client.get("/shares").text
    assert 'href="/shares/bkt_9"' in page and "CT thorax" in page and "Rita" in page
    assert 'class="badge message-read"' in page, "the sender's Message label, green"
    assert "✓ opened" in page, "and who opened it"


def test_the_share_dialog_says_a_default_validity_in_calendar_months(
    client: TestClient, fake: FakeAPI
) -> None:
    """Without a default in days, a department's default is calendar months (one at least)."""
    fake.answer(
        "GET",
        "/api/studies/1.2.3",
        {"study_uid": "1.2.3", "department_id": "dep_1", "access": {"download": False}},
    )
    fake.answer("GET", "/api/departments/dep_1", {"policy": {"default_validity_months": 3}})
    fake.answer("GET", "/api/favorites", [])
    fake.answer("GET", "/api/share-preferences", {})
    log_in(client)
    page = client.get("/share?study=1.2.3").text
    assert "Valid 3 calendar month(s) by default" in page
    assert "days by default" not in page
