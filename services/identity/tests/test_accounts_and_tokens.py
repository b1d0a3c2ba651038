"""Issue point 1: accounts, registration, argon2 passwords, access + rotating refresh tokens,
JWKS, logout and refresh revocation, eID behind an interface. Point 9: events for each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from studyshare.identity.adapters.eid import ExternalIdentity, ExternalIdentityProvider
from studyshare.identity.adapters.stores import Sessions
from studyshare.identity.entrypoints.api import create_app
from studyshare.identity.service_layer.context import Identity
from studyshare.identity.settings import IdentitySettings
from studyshare.plumbing.errors import Unauthorized
from studyshare.plumbing.testing import production_settings
from studyshare.plumbing.tokens import TokenSigner

from .conftest import DESK

PROFILE = {
    "username": "dr.peeters",
    "first_name": "Jan",
    "last_name": "Peeters",
    "email": "jan@praktijk.be",
    "email_public": True,
    "mobile": "+32 475 12 34 56",
    "language": "nl",
    "profession": "dentist",
    "physician_numbers": [{"registry": "RIZIV", "number": "1-23456-78-901"}],
}


async def test_service_desk_registers_a_physician_who_logs_in_with_a_verifiable_token(api):
    desk = await api.desk()
    user_id = await api.register(desk, **PROFILE, roles=["physician"])
    login = await api.login("dr.peeters", "a-long-password-1")
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    claims = await api.verify(body["access_token"])
    assert claims.sub == user_id and claims.kind == "user"
    assert claims.roles == ("physician",) and claims.environment == "be"
    assert claims.exp - int(claims.iat) == 900  # iat has milliseconds
    me = (
        await api.client.get(
            "/api/users/me", headers=await api.headers("dr.peeters", "a-long-password-1")
        )
    ).json()
    assert me["language"] == "nl" and me["profession"] == "dentist"
    assert me["physician_numbers"] == [{"registry": "RIZIV", "number": "1-23456-78-901"}]
    credentials = await api.identity.db.credentials.find_one({"_id": user_id})
    assert credentials["password_hash"].startswith("$argon2id$")
    raw_events = await api.identity.db.events.find({}).to_list(None)
    assert "a-long-password-1" not in str(raw_events) and "$argon2" not in str(raw_events)
    [registered] = [e for e in await api.events("UserRegistered") if e.aggregate_id == user_id]
    assert registered.payload["registered_by"] == registered.actor.id
    assert len(await api.events("LoginSucceeded")) >= 2


async def test_a_department_admin_registers_only_into_their_own_departments(api):
    desk = await api.desk()
    made = await api.client.post("/api/departments", json={"name": "A"}, headers=desk)
    dep_a = made.json()["id"]
    admin_id = await api.register(
        desk, username="admin.rad", roles=["department_admin"], admin_of=[dep_a]
    )
    admin = await api.headers("admin.rad", "a-long-password-1")
    claims = await api.verify(admin["Authorization"].split()[1])
    assert claims.admin_of == (dep_a,) and dep_a in claims.department_ids
    ok = await api.client.post(
        "/api/users",
        json={
            **PROFILE,
            "username": "staff.a",
            "password": "a-long-password-1",
            "roles": ["department_staff"],
            "department_ids": [dep_a],
        },
        headers=admin,
    )
    assert ok.status_code == 201
    refused = await api.client.post(
        "/api/users",
        json={
            **PROFILE,
            "username": "staff.b",
            "password": "a-long-password-1",
            "roles": ["department_staff"],
            "department_ids": ["dep_b"],
        },
        headers=admin,
    )
    assert refused.status_code == 403 and refused.json()["rule"] == "NotAllowed"
    desk_role = await api.client.post(
        "/api/users",
        json={
            **PROFILE,
            "username": "x.desk",
            "password": "a-long-password-1",
            "roles": ["service_desk"],
            "department_ids": [dep_a],
        },
        headers=admin,
    )
    assert desk_role.status_code == 403
    physician = await api.headers("staff.a", "a-long-password-1")
    assert (
        await api.client.post(
            "/api/users", json={**PROFILE, "password": "a-long-password-1"}, headers=physician
        )
    ).status_code == 403
    assert admin_id.startswith("usr_")


async def test_self_registration_waits_for_approval_by_the_service_desk(api):
    response = await api.client.post(
        "/api/users/register", json={**PROFILE, "password": "a-long-password-1"}
    )
    assert response.status_code == 201
    user_id = response.json()["id"]
    assert response.json() == {"id": user_id, "user_id": user_id, "status": "pending"}
    pending = await api.login("dr.peeters", "a-long-password-1")
    assert pending.status_code == 403 and pending.json()["rule"] == "AccountNotApproved"
    wrong = await api.login("dr.peeters", "not-the-password")
    assert wrong.status_code == 401 and wrong.json()["rule"] == "InvalidCredentials"
    desk = await api.desk()
    waiting = (await api.client.get("/api/users/pending", headers=desk)).json()
    assert [u["user_id"] for u in waiting] == [user_id] and waiting[0]["status"] == "pending"
    physician = await api.client.post(f"/api/users/{user_id}/approve", headers=desk)
    assert physician.status_code == 204
    again = await api.client.post(f"/api/users/{user_id}/approve", headers=desk)
    assert again.status_code == 409 and again.json()["rule"] == "AlreadyApproved"
    assert (await api.login("dr.peeters", "a-long-password-1")).status_code == 200
    assert (await api.client.get("/api/users/pending", headers=desk)).json() == []
    me = await api.headers("dr.peeters", "a-long-password-1")
    assert (await api.client.get("/api/users/pending", headers=me)).status_code == 403
    assert [e.payload["user_id"] for e in await api.events("UserApproved")] == [user_id]
    reasons = [e.payload["reason"] for e in await api.events("LoginFailed")]
    assert "not_approved" in reasons and "bad_credentials" in reasons


async def test_self_registration_cannot_grant_roles_and_usernames_are_unique(api):
    body = {**PROFILE, "password": "a-long-password-1", "roles": ["service_desk"]}
    refused = await api.client.post("/api/users/register", json=body)
    assert refused.status_code == 422, "roles are not part of a self-registration"
    body.pop("roles")
    assert (await api.client.post("/api/users/register", json=body)).status_code == 201
    body["username"] = "DR.PEETERS"
    taken = await api.client.post("/api/users/register", json=body)
    assert taken.status_code == 409 and taken.json()["rule"] == "UsernameTaken"
    weak = await api.client.post(
        "/api/users/register", json={**body, "username": "other", "password": "my-other-password"}
    )
    assert weak.status_code == 422 and weak.json()["rule"] == "WeakPassword"
    short = await api.client.post(
        "/api/users/register", json={**body, "username": "other", "password": "short"}
    )
    assert short.status_code == 422 and short.json()["rule"] == "InvalidRequest"
    assert len(await api.events("UserRegistered")) == 2, (
        "desk + one physician, refusals store nothing"
    )


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@evil.example",
        "Eve\nX-Injected: yes",
        "Eve\tPeeters",
        "Eve\x00",
        "Eve\x1b[31m",
        "Eve\x85X",
        "Eve\u2028X",
        "Eve\u2029X",
    ],
)
async def test_a_name_with_a_line_break_or_control_character_is_refused_and_nothing_stored(
    api, name
):
    """A name goes into mail headers and bodies: a line break there forges lines."""
    desk = await api.desk()
    await api.register(desk, **PROFILE)
    me = await api.headers("dr.peeters", "a-long-password-1")
    before = len(await api.events())
    person = {**PROFILE, "username": "eve", "password": "a-long-password-1"}
    attempts = {
        "self-registration": ("POST", "/api/users/register", {**person, "first_name": name}, {}),
        "registration by the desk": ("POST", "/api/users", {**person, "last_name": name}, desk),
        "own first name": (
            "PATCH",
            "/api/users/me",
            {"first_name": name, "current_password": "a-long-password-1"},
            me,
        ),
        "own last name": (
            "PATCH",
            "/api/users/me",
            {"last_name": name, "current_password": "a-long-password-1"},
            me,
        ),
        "group": ("POST", "/api/groups", {"name": name}, me),
        "department": ("POST", "/api/departments", {"name": name}, desk),
    }
    for what, (method, path, body, headers) in attempts.items():
        answer = await api.client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 422, (what, answer.status_code, answer.text)
        assert answer.json()["rule"] == "InvalidRequest", what
        assert "control characters" in answer.json()["detail"], (what, answer.json())
    assert len(await api.events()) == before, "a refusal stores nothing"
    assert (await api.login("eve", "a-long-password-1")).status_code == 401
    mine = (await api.client.get("/api/users/me", headers=me)).json()
    assert (mine["first_name"], mine["last_name"]) == ("Jan", "Peeters")


async def test_names_in_any_script_with_apostrophes_and_hyphens_are_taken(api):
    me_profile = {**PROFILE, "first_name": "Zoë-Anne", "last_name": "D'Hondt Ødegård 山田"}
    await api.register(await api.desk(), **me_profile)
    me = await api.headers("dr.peeters", "a-long-password-1")
    mine = (await api.client.get("/api/users/me", headers=me)).json()
    assert (mine["first_name"], mine["last_name"]) == ("Zoë-Anne", "D'Hondt Ødegård 山田")


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_whole_session(api):
    await api.register(await api.desk(), **PROFILE)
    first = (await api.login("dr.peeters", "a-long-password-1")).json()
    second = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    claims = await api.verify(second["access_token"])
    assert claims.sid == (await api.verify(first["access_token"])).sid
    reused = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 401 and reused.json()["rule"] == "RefreshTokenReused"
    family = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert family.status_code == 401, "the newer token of the same family is revoked too"
    me = await api.client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert me.status_code == 401
    assert len(await api.events("RefreshTokenReuseDetected")) == 1
    sid = claims.sid
    session_stream = [e.event_type for e in await api.identity.store.load(sid)]
    assert session_stream == ["LoginSucceeded", "LoginSucceeded", "RefreshTokenReuseDetected"]
    user_stream = await api.identity.store.load(claims.sub)
    assert [e.event_type for e in user_stream] == ["UserRegistered"], (
        "logins and refreshes do not grow the user's stream"
    )
    garbage = await api.client.post("/api/auth/refresh", json={"refresh_token": "nope"})
    assert garbage.status_code == 401 and garbage.json()["rule"] == "InvalidRefreshToken"


async def test_logout_revokes_the_session_and_its_refresh_token(api):
    await api.register(await api.desk(), **PROFILE)
    tokens = (await api.login("dr.peeters", "a-long-password-1")).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await api.client.get("/api/users/me", headers=bearer)).status_code == 200
    out = await api.client.post("/api/auth/logout", headers=bearer)
    assert out.status_code == 204
    ended = await api.client.get("/api/users/me", headers=bearer)
    assert ended.status_code == 401 and ended.json()["rule"] == "SessionEnded"
    refreshed = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert len(await api.events("LoggedOut")) == 1
    other = (await api.login("dr.peeters", "a-long-password-1")).json()
    by_refresh = await api.client.post(
        "/api/auth/logout", json={"refresh_token": other["refresh_token"]}
    )
    assert by_refresh.status_code == 204
    assert (
        await api.client.post("/api/auth/refresh", json={"refresh_token": other["refresh_token"]})
    ).status_code == 401
    assert (await api.client.post("/api/auth/logout")).status_code == 401


async def test_profile_changes_are_events_and_others_see_only_public_contact_data(api):
    desk = await api.desk()
    user_id = await api.register(desk, **{**PROFILE, "email_public": False})
    await api.register(desk, username="colleague")
    me = await api.headers("dr.peeters", "a-long-password-1")
    patched = await api.client.patch(
        "/api/users/me", json={"mobile_public": True, "language": "fr"}, headers=me
    )
    assert patched.status_code == 200 and patched.json()["language"] == "fr"
    [changed] = await api.events("UserProfileChanged")
    assert changed.payload["mobile_public"] is True and changed.payload["language"] == "fr"
    colleague = await api.headers("colleague", "a-long-password-1")
    seen = (await api.client.get(f"/api/users/{user_id}", headers=colleague)).json()
    assert seen["email"] is None and seen["mobile"] == "+32 475 12 34 56"
    assert seen["username"] is None
    desk_view = (await api.client.get(f"/api/users/{user_id}", headers=desk)).json()
    assert desk_view["email"] == "jan@praktijk.be"


async def test_jwks_publishes_the_current_and_previous_keys(make_api):
    previous = TokenSigner(kid="old-key")
    api = await make_api(previous_signing_keys_jwks=__import__("json").dumps(previous.jwks()))
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    kids = [k["kid"] for k in jwks["keys"]]
    assert kids == [api.identity.signer.kid, "old-key"]
    assert all(k["alg"] == "EdDSA" and k["kty"] == "OKP" for k in jwks["keys"])
    old_token = previous.sign(sub="usr_x", kind="user")
    assert (await api.verify(old_token)).sub == "usr_x", "tokens of the previous key still verify"
    with pytest.raises(Unauthorized):
        await api.verify(TokenSigner(kid="stranger").sign(sub="usr_x"))


async def test_the_development_key_is_generated_once_and_shared_by_every_process(
    real_infra, mongo_db
):
    settings = real_infra.settings(IdentitySettings, database=mongo_db.name)
    one = await Identity.start(mongo_db, settings)
    two = await Identity.start(mongo_db, settings)
    assert one.signer.kid == two.signer.kid
    assert one.jwks() == two.jwks()


def test_outside_development_the_api_needs_its_signing_key_from_settings():
    production = {
        **production_settings("identity"),
        "otp_seal_public_key": "x" * 44,
        "reference_number_secret": "r" * 32,
    }
    without_key = IdentitySettings(**production)  # the relay and the worker never sign
    with pytest.raises(ValueError, match="SIGNING_KEY"):
        create_app(without_key)
    signer = TokenSigner(kid="k1")
    with_key = IdentitySettings(
        **production, signing_key_pem=signer.private_pem(), signing_key_id="k1"
    )
    assert create_app(with_key).title == "StudyShare identity"
    with pytest.raises(ValueError, match="BOOTSTRAP_PASSWORD"):
        IdentitySettings(**production, bootstrap_password="changeme")
    with pytest.raises(ValueError, match="REFERENCE_NUMBER_SECRET"):
        IdentitySettings(**{**production, "reference_number_secret": "dev-secret"})


async def test_the_bootstrap_service_desk_is_created_once(make_api):
    one = await make_api()
    two = await make_api()
    users = await one.identity.db.users.find({"username": DESK[0]}).to_list(None)
    assert len(users) == 1 and users[0]["roles"] == ["service_desk"]
    assert (await two.login(*DESK)).status_code == 200


class FakeEid:
    """A stand-in for the Belgian eID: a callback carrying `subject` is trusted."""

    name = "be-eid"

    def authorization_url(self, state: str, redirect_uri: str) -> str:
        return f"https://eid.example/authorize?state={state}&redirect_uri={redirect_uri}"

    async def complete(self, params: dict[str, str]) -> ExternalIdentity:
        if params.get("signature") != "valid":
            raise Unauthorized("the eID answer is not signed")
        return ExternalIdentity(subject=params["subject"])


async def eid_state(api, headers: dict[str, str] | None = None) -> str:
    """Start an external login (as the logged-in user of `headers`, with their password, to
    link); its state."""
    if headers:
        start = await api.client.post(
            "/api/auth/external/be-eid/link/start",
            json={"redirect_uri": "https://portal/cb", "current_password": "a-long-password-1"},
            headers=headers,
        )
    else:
        start = await api.client.get(
            "/api/auth/external/be-eid/start", params={"redirect_uri": "https://portal/cb"}
        )
    assert start.status_code == 200, start.text
    assert start.json()["authorization_url"].startswith("https://eid.example/authorize")
    return start.json()["state"]


async def test_eid_login_goes_through_the_external_identity_provider_interface(api):
    assert isinstance(FakeEid(), ExternalIdentityProvider)
    api.app.state.identity_providers = {"be-eid": FakeEid()}
    user_id = await api.register(await api.desk(), **PROFILE)
    callback = {"subject": "hash-of-rrn", "signature": "valid"}
    unlinked = await api.client.get(
        "/api/auth/external/be-eid/callback", params={**callback, "state": await eid_state(api)}
    )
    assert unlinked.status_code == 401 and unlinked.json()["rule"] == "ExternalIdentityNotLinked"
    me = await api.headers("dr.peeters", "a-long-password-1")
    linked = await api.client.post(
        "/api/auth/external/be-eid/link",
        json={**callback, "state": await eid_state(api, me)},
        headers=me,
    )
    assert linked.status_code == 204
    login = await api.client.get(
        "/api/auth/external/be-eid/callback", params={**callback, "state": await eid_state(api)}
    )
    assert login.status_code == 200
    assert (await api.verify(login.json()["access_token"])).sub == user_id
    forged = await api.client.get(
        "/api/auth/external/be-eid/callback",
        params={**callback, "signature": "x", "state": await eid_state(api)},
    )
    assert forged.status_code == 401
    methods = [e.payload["method"] for e in await api.events("LoginSucceeded")]
    assert "eid" in methods
    unknown = await api.client.get("/api/auth/external/itsme/start", params={"redirect_uri": "x"})
    assert unknown.status_code == 404


async def test_deactivation_ends_every_session_but_the_desk_cannot_deactivate_itself(api):
    desk = await api.desk()
    user_id = await api.register(desk, **PROFILE)
    tokens = (await api.login("dr.peeters", "a-long-password-1")).json()
    gone = await api.client.post(f"/api/users/{user_id}/deactivate", headers=desk)
    assert gone.status_code == 204
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await api.client.get("/api/users/me", headers=bearer)).status_code == 401
    refresh = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 401
    login = await api.login("dr.peeters", "a-long-password-1")
    assert login.status_code == 403 and login.json()["rule"] == "AccountDeactivated"
    desk_id = (await api.client.get("/api/users/me", headers=desk)).json()["user_id"]
    itself = await api.client.post(f"/api/users/{desk_id}/deactivate", headers=desk)
    assert itself.status_code == 403 and itself.json()["rule"] == "CannotDeactivateYourself"
    assert [e.payload["user_id"] for e in await api.events("UserDeactivated")] == [user_id]


async def test_a_refresh_token_is_spent_once_even_when_presented_twice_at_once(mongo_db):
    sessions = Sessions(mongo_db)
    now = datetime.now(UTC)
    await sessions.open("ses_1", "usr_1", "refresh-1", now, 3600)
    moments = [now + timedelta(milliseconds=n) for n in range(4)]
    spent = await asyncio.gather(*(sessions.use_token("refresh-1", at) for at in moments))
    assert sorted(spent) == [False, False, False, True]
    assert (await sessions.find_token("refresh-1"))["used_at"] is not None
    assert await sessions.use_token("never-issued", now) is False


async def test_a_refresh_in_flight_during_a_password_reset_gets_no_token(api):
    """A refresh that had passed its session check when the desk reset the password went on
    to sign a token dated after the account's end: the other services, which refuse an
    ended account's tokens by their issue time, took it for its whole lifetime."""
    import asyncio

    desk = await api.desk()
    user_id = await api.register(desk, username="dr.stolen")
    stolen = (await api.login("dr.stolen", "a-long-password-1")).json()
    sessions = api.identity.sessions
    add_token, passed, go_on = sessions.add_token, asyncio.Event(), asyncio.Event()

    async def held_add_token(*args, **kwargs):
        passed.set()  # the refresh is past its checks
        await go_on.wait()
        return await add_token(*args, **kwargs)

    sessions.add_token = held_add_token
    body = {"refresh_token": stolen["refresh_token"]}
    refresh = asyncio.create_task(api.client.post("/api/auth/refresh", json=body))
    await passed.wait()
    sessions.add_token = add_token
    reset = await api.client.post(
        f"/api/users/{user_id}/password", json={"new_password": "desk-set-pass-3"}, headers=desk
    )
    assert reset.status_code == 204, reset.text
    go_on.set()
    answer = await refresh
    assert answer.status_code == 401, answer.text
    assert answer.json()["rule"] == "InvalidRefreshToken"
