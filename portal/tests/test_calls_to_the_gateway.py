"""How the portal calls the public API through the gateway: the browser's address it vouches
for to identity is the one the gateway in front of it saw, whatever the portal's peer (in
Kubernetes, a gateway pod) and whatever the browser wrote into X-Forwarded-For itself; and by
the gateway's in-cluster address it asks for the public name, over HTTPS."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
from fastapi.testclient import TestClient

from studyshare.plumbing.client_address import ADDRESS
from studyshare.portal.adapters.public_api import PublicAPI
from studyshare.portal.app import create_app
from studyshare.portal.settings import PortalSettings


def vouched_at_login(forwarded_for: str | None, **settings: int) -> str | None:
    """The address the portal names to identity when a browser logs in."""
    seen: list[str | None] = []

    def identity(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get(ADDRESS))
        return httpx.Response(401, json={"status": 401, "detail": "wrong"})

    api = PublicAPI(
        "http://gateway.test", 5, "portal-and-identity", transport=httpx.MockTransport(identity)
    )
    app = create_app(PortalSettings(environment="test", **settings), api=api)
    with TestClient(app, base_url="https://portal.test") as client:
        page = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        client.post(
            "/login",
            data={"csrf": csrf.group(1), "username": "u", "password": "p"},
            headers=headers,
        )
    assert seen, "the login reached identity"
    return seen[-1]


def test_the_browser_is_the_address_the_gateway_appended() -> None:
    assert vouched_at_login("198.51.100.7") == "198.51.100.7"
    assert vouched_at_login("1.1.1.1, 198.51.100.7") == "198.51.100.7", "not what it wrote"
    two_proxies = {"portal_trusted_proxies": 2}
    assert vouched_at_login("1.1.1.1, 198.51.100.7, 10.0.0.3", **two_proxies) == "198.51.100.7"


def test_without_a_proxy_the_browser_is_the_peer() -> None:
    assert vouched_at_login(None) == "testclient"
    assert vouched_at_login("198.51.100.7", portal_trusted_proxies=0) == "testclient"


async def test_by_its_in_cluster_address_the_gateway_is_asked_for_its_public_name() -> None:
    """In Kubernetes the portal calls the gateway's Service over HTTPS: the Host and the TLS
    server name are the public name its listener and certificate answer for."""
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    api = PublicAPI(
        "https://studyshare-gateway.envoy-gateway-system.svc",
        5,
        host="studyshare.example.org",
        transport=httpx.MockTransport(gateway),
    )
    await api.anonymous("GET", "/api/auth/environments")
    (request,) = seen
    assert request.headers["host"] == "studyshare.example.org"
    assert request.extensions["sni_hostname"] == "studyshare.example.org"
    assert request.url.host == "studyshare-gateway.envoy-gateway-system.svc"


async def test_a_pages_calls_at_once_refresh_the_tokens_once() -> None:
    """A page asks the API several things at once; with the access token about to end, each
    call refreshed with the same refresh token, and identity took the second use for a stolen
    token: it ended the session, and the user was logged out after 15 idle minutes."""
    from studyshare.portal.sessions import Session

    spent: set[str] = set()
    refreshes = 0

    async def identity(request: httpx.Request) -> httpx.Response:
        nonlocal refreshes
        await asyncio.sleep(0.01)  # the network: the calls run side by side
        if request.url.path == "/api/auth/refresh":
            token = json.loads(request.content)["refresh_token"]
            if token in spent:  # as identity does: a spent token again ends the session
                return httpx.Response(401, json={"status": 401, "rule": "SessionEnded"})
            spent.add(token)
            refreshes += 1
            return httpx.Response(
                200,
                json={"access_token": f"a{refreshes + 1}", "refresh_token": f"r{refreshes + 1}"},
            )
        if request.headers["Authorization"] != f"Bearer a{refreshes + 1}":
            return httpx.Response(401, json={"status": 401, "rule": "Unauthorized"})
        return httpx.Response(200, json={"path": request.url.path})

    api = PublicAPI("http://gateway.test", 5, transport=httpx.MockTransport(identity))
    session = Session(id="s", csrf="c", access_token="a1", refresh_token="r1")
    session.access_expires_at = time.time() + 10  # within the margin: refreshed before use
    paths = ["/api/studies", "/api/users/me", "/api/labels", "/api/shares"]
    answers = await asyncio.gather(*(api.call(session, "GET", p) for p in paths))
    assert [a["path"] for a in answers] == paths
    assert refreshes == 1 and session.logged_in and session.refresh_token == "r2"
    await api.aclose()
