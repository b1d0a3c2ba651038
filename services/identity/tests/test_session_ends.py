"""Issue 15, point 13: a logout answers only once every API process following identity's list
of ended sessions has the end (or has certainly stopped answering); the list is numbered
without gaps; only the following services may read it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from studyshare.identity.adapters.session_ends import SessionEnds
from studyshare.identity.entrypoints.api import create_app
from studyshare.plumbing.propagation import HEADER
from studyshare.plumbing.revocations import Ending

from .conftest import Api, identity_settings

ENDS = "/internal/session-ends"
AS_SHARE = {"studyshare-caller": "share", "authorization": "Bearer dev-internal-share"}


@pytest.fixture
async def live(real_infra, mongo_db) -> AsyncIterator[Api]:
    """Identity with its lifespan (the ends' change stream runs)."""
    settings = identity_settings(real_infra, mongo_db, session_barrier_timeout_s=3.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://identity") as client:
            yield Api(client, app.state.identity, app)


async def poll(api: Api, follower: str, after: int | None = None, **params: Any) -> dict:
    query: dict[str, Any] = {"follower": follower, "wait_s": 0.5, "lease_s": 5, **params}
    if after is not None:
        query["after"] = after
    response = await api.client.get(ENDS, params=query, headers=AS_SHARE)
    assert response.status_code == 200, response.text
    return response.json()


class Follower:
    """An API process's feed, in a loop: what it holds and when it got each end."""

    def __init__(self, api: Api, name: str) -> None:
        self.api, self.name = api, name
        self.position: int | None = None
        self.sessions: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def once(self) -> None:
        body = await poll(self.api, self.name, self.position)
        for end in body["ends"]:
            self.sessions.setdefault(end["key"], time.monotonic())
        self.position = body["position"]

    async def follow(self) -> None:
        while True:
            await self.once()

    async def __aenter__(self) -> Follower:
        await self.once()
        self.task = asyncio.create_task(self.follow())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def login(api: Api) -> tuple[dict[str, str], str]:
    response = await api.login("desk", "desk-password-1")
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    return {"Authorization": f"Bearer {token}"}, (await api.verify(token)).sid


async def test_a_logout_answers_after_every_follower_holds_its_end(live: Api):
    headers, sid = await login(live)
    async with Follower(live, "share:a") as a, Follower(live, "audit:b") as b:
        response = await live.client.post("/api/auth/logout", headers=headers)
        answered = time.monotonic()
        assert response.status_code == 204 and response.headers[HEADER] == "true"
        for follower in (a, b):
            assert sid in follower.sessions, f"{follower.name} did not have the end"
            assert follower.sessions[sid] <= answered


async def test_a_follower_that_stopped_polling_is_waited_out_by_its_lease(live: Api):
    headers, _ = await login(live)
    await poll(live, "notify:gone", lease_s=0.5)  # then killed: it never polls again
    started = time.monotonic()
    response = await live.client.post("/api/auth/logout", headers=headers)
    assert response.status_code == 204 and response.headers[HEADER] == "true"
    assert time.monotonic() - started >= 0.45, "its lease had to run out first"


async def test_a_follower_that_left_is_not_waited_for(live: Api):
    headers, _ = await login(live)
    await poll(live, "notify:left", lease_s=30)
    left = await live.client.delete(f"{ENDS}/followers/notify:left", headers=AS_SHARE)
    assert left.status_code == 204
    started = time.monotonic()
    response = await live.client.post("/api/auth/logout", headers=headers)
    assert response.headers[HEADER] == "true" and time.monotonic() - started < 2.5


async def test_a_follower_that_keeps_lagging_makes_the_logout_say_so(live: Api):
    headers, _ = await login(live)
    stop = asyncio.Event()

    async def lagging() -> None:  # alive, but never takes what it is given
        while not stop.is_set():
            await poll(live, "share:lagging", after=0, wait_s=0.1, lease_s=1)

    # registered before the logout (else the barrier may find no follower to wait for)
    await poll(live, "share:lagging", after=0, wait_s=0.1, lease_s=1)
    task = asyncio.create_task(lagging())
    try:
        response = await live.client.post("/api/auth/logout", headers=headers)
    finally:
        stop.set()
        await task
    assert response.status_code == 204 and response.headers[HEADER] == "false"


async def test_a_deactivation_and_a_reset_end_the_account_for_the_followers(live: Api):
    desk = (await login(live))[0]
    user_id = await live.register(
        desk, username="greet", email="greet@example.org", roles=["physician"]
    )
    async with Follower(live, "share:acc") as follower:
        reset = await live.client.post(
            f"/api/users/{user_id}/password",
            json={"new_password": "another-long-password-2"},
            headers=desk,
        )
        assert reset.status_code == 204 and reset.headers[HEADER] == "true"
        assert user_id in follower.sessions
        body = await poll(live, "share:acc")
        kinds = {(e["kind"], e["key"], e["reason"]) for e in body["ends"]}
        assert ("account", user_id, "the account's password was reset") in kinds


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"studyshare-caller": "identity", "authorization": "Bearer dev-internal-identity"},
        {"studyshare-caller": "share", "authorization": "Bearer dev-internal-audit"},
    ],
)
async def test_only_the_following_services_may_read_the_ends(live: Api, headers):
    response = await live.client.get(ENDS, params={"follower": "x"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["rule"] == "InternalCallerNotAdmitted"
    assert "/internal" not in (await live.client.get("/openapi.json")).text


async def test_ends_are_numbered_without_gaps_by_concurrent_processes(mongo_db):
    one, two = SessionEnds(mongo_db), SessionEnds(mongo_db)

    async def record(ends: SessionEnds, prefix: str) -> None:
        for i in range(15):
            await ends.record([Ending("session", f"{prefix}{i}", time.time(), "logged out")])

    await asyncio.gather(record(one, "a"), record(two, "b"))
    found = await one.after(None)
    assert [e["_id"] for e in found] == list(range(1, 31))
    assert len({e["key"] for e in found}) == 30
    assert [e["_id"] for e in await one.after(28)] == [29, 30]


async def test_pruning_keeps_the_newest_end_so_numbers_never_repeat(mongo_db):
    clock = [1_000_000.0]
    ends = SessionEnds(mongo_db, keep_s=60, clock=lambda: clock[0])
    await ends.record(
        [Ending("session", "s1", clock[0], "r"), Ending("session", "s2", clock[0], "r")]
    )
    clock[0] += 120
    assert await ends.prune() == 1
    assert await ends.head() == 2
    assert await ends.record([Ending("session", "s3", clock[0], "r")]) == 3
