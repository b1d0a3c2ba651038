"""The stand-in eID of development and tests: listed as a provider, its page signs the
digest of a national number, and the external-login routes accept only what it signed."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from studyshare.identity.settings import IdentitySettings

PORTAL = "http://127.0.0.1:8080/login/eid/demo-eid/callback"


async def sign_in(api, number: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Start at identity, fill in the demo page: the callback's parameters."""
    if headers:  # to link: the account holder's password
        start = await api.client.post(
            "/api/auth/external/demo-eid/link/start",
            json={"redirect_uri": PORTAL, "current_password": "a-long-password-1"},
            headers=headers,
        )
    else:
        start = await api.client.get(
            "/api/auth/external/demo-eid/start", params={"redirect_uri": PORTAL}
        )
    assert start.status_code == 200, start.text
    page_url = urlsplit(start.json()["authorization_url"])
    page = await api.client.get(f"{page_url.path}?{page_url.query}")
    assert page.status_code == 200 and "national-number" in page.text
    form = {k: v[0] for k, v in parse_qs(page_url.query).items()} | {"national_number": number}
    back = await api.client.post(page_url.path, data=form)
    assert back.status_code == 303
    assert back.headers["location"].startswith(PORTAL + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(back.headers["location"]).query).items()}


async def test_the_demo_eid_is_a_provider_that_links_and_logs_in(make_api):
    api = await make_api(demo_eid=True, public_base_url="http://127.0.0.1:8080")
    listed = await api.client.get("/api/auth/external")
    assert listed.json() == {"providers": [{"name": "demo-eid", "label": "eID (demo)"}]}
    desk = await api.desk()
    user_id = await api.register(desk, username="dr.eid")
    unlinked = await api.client.get(
        "/api/auth/external/demo-eid/callback", params=await sign_in(api, "85.07.30-033.28")
    )
    assert unlinked.json()["rule"] == "ExternalIdentityNotLinked"
    me = await api.headers("dr.eid", "a-long-password-1")
    linked = await api.client.post(
        "/api/auth/external/demo-eid/link",
        json=await sign_in(api, "85.07.30-033.28", me),
        headers=me,
    )
    assert linked.status_code == 204, linked.text
    params = await sign_in(api, "85.07.30-033.28")
    forged = await api.client.get(
        "/api/auth/external/demo-eid/callback", params={**params, "subject": "someone-else"}
    )
    assert forged.status_code == 401
    params = await sign_in(api, "85.07.30-033.28")
    login = await api.client.get("/api/auth/external/demo-eid/callback", params=params)
    assert login.status_code == 200, login.text
    assert (await api.verify(login.json()["access_token"])).sub == user_id
    assert "85.07.30" not in str(await api.events()), "the number itself is never stored"


async def test_the_demo_page_returns_only_to_this_platform(make_api):
    api = await make_api(demo_eid=True, public_base_url="http://127.0.0.1:8080")
    away = await api.client.get(
        "/api/auth/external/demo-eid/authorize",
        params={"state": "s", "redirect_uri": "https://attacker.example/cb"},
    )
    assert away.status_code == 404


async def test_no_provider_without_the_setting_and_never_in_production(api):
    assert (await api.client.get("/api/auth/external")).json() == {"providers": []}
    page = await api.client.get(
        "/api/auth/external/demo-eid/authorize", params={"state": "s", "redirect_uri": PORTAL}
    )
    assert page.status_code == 404
    development = IdentitySettings(environment="development", demo_eid=True)
    with pytest.raises(ValueError, match="DEMO_EID"):
        development.model_copy(update={"environment": "production"})._checked()
