"""Issue point 8: each account has one environment; a login in another environment answers
with the right portal, only once the password checked out."""

from __future__ import annotations

import json


async def test_an_account_of_another_environment_gets_its_portal_after_a_correct_password(api):
    await api.register(await api.desk(), username="dr.dutch", environment="nl")
    wrong = await api.login("dr.dutch", "bad-password")
    assert wrong.status_code == 401 and wrong.json()["rule"] == "InvalidCredentials"
    assert "portal_url" not in wrong.json()
    right = await api.login("dr.dutch", "a-long-password-1")
    assert right.status_code == 421
    body = right.json()
    assert body["rule"] == "WrongEnvironment"
    assert body["environment"] == "nl"
    assert body["portal_url"] == "https://nl.studyshare.example"
    assert "access_token" not in body
    reasons = [e.payload["reason"] for e in await api.events("LoginFailed")]
    assert reasons == ["bad_credentials", "wrong_environment"]
    envs = (await api.client.get("/api/auth/environments")).json()
    assert envs["current"] == "be"
    assert {"code": "nl", "portal_url": "https://nl.studyshare.example"} in envs["environments"]


async def test_the_token_carries_the_environment_of_the_deployment(make_api):
    api = await make_api(environment_code="nl")
    await api.register(await api.desk(), username="dr.dutch", environment="nl")
    login = await api.login("dr.dutch", "a-long-password-1")
    assert login.status_code == 200
    assert (await api.verify(login.json()["access_token"])).environment == "nl"


async def test_an_account_belongs_to_a_known_environment(api):
    desk = await api.desk()
    response = await api.client.post(
        "/api/users",
        json={
            "username": "dr.nowhere",
            "password": "a-long-password-1",
            "first_name": "No",
            "last_name": "Where",
            "environment": "xx",
        },
        headers=desk,
    )
    assert response.status_code == 422 and response.json()["rule"] == "UnknownEnvironment"


def test_the_offered_environment_is_the_accounts_only_when_active_elsewhere():
    from studyshare.identity.domain.environment import offered_environment

    assert offered_environment(None, "be") == "be"
    assert offered_environment({"status": "active", "environment": "nl"}, "be") == "nl"
    assert offered_environment({"status": "active", "environment": "be"}, "be") == "be"
    assert offered_environment({"status": "pending", "environment": "nl"}, "be") == "be"
    assert offered_environment({"status": "deactivated", "environment": "nl"}, "be") == "be"


async def test_the_environment_is_offered_before_the_password_revealing_nothing_about_existence(
    api,
):
    """Issue 16, point 11 (manual L17/L18): an unknown username and an account of this
    environment get byte-identical answers; an account of another environment its portal."""
    desk = await api.desk()
    await api.register(desk, username="dr.dutch", environment="nl")
    await api.register(desk, username="dr.belgian")

    async def offered(username: str):
        response = await api.client.post("/api/auth/environment", json={"username": username})
        assert response.status_code == 200, response.text
        return response.content

    known_here = await offered("dr.belgian")
    assert known_here == await offered("nobody.at.all") == await offered("DR.BELGIAN ")
    assert known_here == await offered("dr.nobody-" + "x" * 150)
    assert json.loads(known_here) == {
        "environment": "be",
        "portal_url": "https://be.studyshare.example",
        "current": True,
    }
    elsewhere = json.loads(await offered("dr.dutch"))
    assert elsewhere == {
        "environment": "nl",
        "portal_url": "https://nl.studyshare.example",
        "current": False,
    }
    bad = await api.client.post("/api/auth/environment", json={"username": ""})
    assert bad.status_code == 422
    assert await api.events("LoginFailed") == [], "asking is not a login attempt"
