"""Issue 15, point 11: the external-login callback takes only a `state` this service handed
out (single use, for that provider, expiring; to link, started by the same user), and an
account with TOTP needs its code after the external login too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .conftest import FakeClock
from .test_accounts_and_tokens import PROFILE, FakeEid, eid_state
from .test_totp import enrol, oathtool

CALLBACK = "/api/auth/external/be-eid/callback"
LINK = "/api/auth/external/be-eid/link"
LINK_START = "/api/auth/external/be-eid/link/start"
SIGNED = {"subject": "hash-of-rrn", "signature": "valid"}


async def link(api, me: dict[str, str]) -> None:
    """Link the signed identity to the account of `me`, through a state `me` started."""
    linked = await api.client.post(
        LINK, json={**SIGNED, "state": await eid_state(api, me)}, headers=me
    )
    assert linked.status_code == 204, linked.text


async def test_the_callback_takes_only_a_state_handed_out_here_and_only_once(api):
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC))
    api.identity.clock = clock
    api.app.state.identity_providers = {"be-eid": FakeEid()}
    await api.register(await api.desk(), **PROFILE)
    await link(api, await api.headers("dr.peeters", "a-long-password-1"))

    for params in (SIGNED, {**SIGNED, "state": "made-up-by-an-attacker"}):
        refused = await api.client.get(CALLBACK, params=params)
        assert refused.status_code == 401, refused.text
        assert refused.json()["rule"] == "ExternalLoginStateInvalid"
    state = await eid_state(api)
    assert (await api.client.get(CALLBACK, params={**SIGNED, "state": state})).status_code == 200
    replayed = await api.client.get(CALLBACK, params={**SIGNED, "state": state})
    assert replayed.json()["rule"] == "ExternalLoginStateInvalid", "single use"
    late = await eid_state(api)
    clock.now += timedelta(minutes=11)
    expired = await api.client.get(CALLBACK, params={**SIGNED, "state": late})
    assert expired.json()["rule"] == "ExternalLoginStateInvalid"
    stored = await api.identity.db.external_login_states.find_one({})
    assert stored is None or late not in str(stored), "kept as a digest only"


async def test_only_the_user_who_started_it_links_an_identity(api):
    """Login CSRF on linking: a victim's session must not finish an attacker's eID login and
    link the attacker's identity to the victim's account."""
    api.app.state.identity_providers = {"be-eid": FakeEid()}
    desk = await api.desk()
    await api.register(desk, **PROFILE)
    await api.register(desk, username="attacker")
    victim = await api.headers("dr.peeters", "a-long-password-1")
    attacker = await api.headers("attacker", "a-long-password-1")
    for state in (await eid_state(api), await eid_state(api, attacker)):
        refused = await api.client.post(LINK, json={**SIGNED, "state": state}, headers=victim)
        assert refused.status_code == 401 and refused.json()["rule"] == "ExternalLoginStateInvalid"
    assert not await api.events("ExternalIdentityLinked")


async def test_an_account_with_totp_needs_its_code_after_the_external_login(api):
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC))
    api.identity.clock = clock
    api.app.state.identity_providers = {"be-eid": FakeEid()}
    secret, _ = await enrol(api, clock)
    clock.now += timedelta(seconds=30)
    me = await api.headers("dr.totp", "a-long-password-1", otp=oathtool(secret, clock.now))
    await link(api, me)

    needs = await api.client.get(CALLBACK, params={**SIGNED, "state": await eid_state(api)})
    assert needs.status_code == 401 and needs.json()["rule"] == "TOTPRequired"
    ticket = needs.json()["login_ticket"]
    clock.now += timedelta(seconds=30)
    wrong = f"{(int(oathtool(secret, clock.now)) + 1) % 10**6:06d}"
    bad = await api.client.post(
        "/api/auth/external/be-eid/totp", json={"login_ticket": ticket, "otp": wrong}
    )
    assert bad.status_code == 401 and bad.json()["rule"] == "InvalidCredentials"
    spent = await api.client.post(
        "/api/auth/external/be-eid/totp",
        json={"login_ticket": ticket, "otp": oathtool(secret, clock.now)},
    )
    assert spent.json()["rule"] == "ExternalLoginTicketInvalid", "a ticket is single use"

    again = await api.client.get(CALLBACK, params={**SIGNED, "state": await eid_state(api)})
    done = await api.client.post(
        "/api/auth/external/be-eid/totp",
        json={"login_ticket": again.json()["login_ticket"], "otp": oathtool(secret, clock.now)},
    )
    assert done.status_code == 200, done.text
    methods = [e.payload["method"] for e in await api.events("LoginSucceeded")]
    assert "eid+totp" in methods and "eid" not in methods
    assert [e.payload["reason"] for e in await api.events("LoginFailed")].count("bad_totp") == 1


async def test_linking_an_identity_needs_the_account_holders_password(api):
    """A linked identity is a second way into the account, one a later password change or
    reset leaves in place: a holder of the account's token (or of an unattended session) once
    linked their own eID with it alone."""
    api.app.state.identity_providers = {"be-eid": FakeEid()}
    await api.register(await api.desk(), **PROFILE)
    me = await api.headers("dr.peeters", "a-long-password-1")
    as_login = await api.client.get(
        "/api/auth/external/be-eid/start", params={"redirect_uri": "https://portal/cb"}, headers=me
    )
    refused = await api.client.post(
        LINK, json={**SIGNED, "state": as_login.json()["state"]}, headers=me
    )
    assert refused.status_code == 401 and refused.json()["rule"] == "ExternalLoginStateInvalid"
    for password, rule in ((None, "InvalidRequest"), ("guess", "InvalidCredentials")):
        body = {"redirect_uri": "https://portal/cb"} | (
            {"current_password": password} if password else {}
        )
        start = await api.client.post(LINK_START, json=body, headers=me)
        assert start.status_code in (401, 403, 422) and start.json()["rule"] == rule, start.text
    assert not await api.events("ExternalIdentityLinked"), "a token alone links nothing"
    await link(api, me)  # with the password
    assert len(await api.events("ExternalIdentityLinked")) == 1
