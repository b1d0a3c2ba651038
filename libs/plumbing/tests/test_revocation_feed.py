"""The revocation feed against the real broker: identity events reach an API's verifier."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import LoggedOut
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import CurrentPrincipal, current_principal
from studyshare.plumbing.eventstore import EventStore, envelope_for
from studyshare.plumbing.hot import hot
from studyshare.plumbing.http import create_app
from studyshare.plumbing.infra import broker, free_port
from studyshare.plumbing.kafka import ensure_topics, producer
from studyshare.plumbing.relay import OutboxRelay
from studyshare.plumbing.revocation_feed import RevocationFeed
from studyshare.plumbing.revocations import SessionRevocations
from studyshare.plumbing.settings import ServiceSettings
from studyshare.plumbing.testing import unique

from .kafka_reading import eventually


async def publish_logout(db, settings: ServiceSettings, user_id: str, session_id: str) -> None:
    """Append `LoggedOut` to an event store and let the real relay publish it."""
    store = EventStore(db)
    await store.ensure_indexes()
    envelope = envelope_for(
        LoggedOut(user_id=user_id, session_id=session_id),
        aggregate_id=session_id,
        aggregate_version=1,
        actor=Actor(id=user_id),
        correlation_id=unique("corr"),
    )
    await store.append([envelope])
    kafka = producer(settings)
    await kafka.start()
    try:
        relay = OutboxRelay(db, kafka)
        await asyncio.sleep(0.05)
        assert await relay.drain() == 1
    finally:
        await kafka.stop()


def things_app(settings: ServiceSettings):
    router = APIRouter()

    async def hot_thing(request: Request, name: str):
        principal = await current_principal(request)
        return JSONResponse({"name": name, "by": principal.sub, "hot": True})

    @router.get("/things/{name}")
    @hot(hot_thing)
    async def thing(name: str, principal: CurrentPrincipal):
        return {"name": name, "by": principal.sub}

    return create_app(settings, title="things", routers=[router])


async def status_of(app, token: str) -> tuple[int, dict]:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/things/x", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()


async def test_an_api_refuses_tokens_of_sessions_ended_before_and_after_it_started(
    real_infra, mongo_db, jwks_server
):
    signer, jwks_url, _ = jwks_server
    settings = real_infra.settings(jwks_url=jwks_url)
    user = unique("usr")
    early, late = unique("ses"), unique("ses")
    early_token = signer.sign(sub=user, kind="user", sid=early)
    late_token = signer.sign(sub=user, kind="user", sid=late)
    await publish_logout(mongo_db, settings, user, early)

    app, twin = things_app(settings), things_app(settings)  # two API processes' worth
    async with app.router.lifespan_context(app), twin.router.lifespan_context(twin):
        for each in (app, twin):
            feed: RevocationFeed = each.state.revocation_feed
            assert await eventually(lambda f=feed: _true(f.caught_up), timeout=30)
        status, body = await status_of(app, early_token)
        assert status == 401 and body["rule"] == "SessionEnded", body
        assert "logged out" in body["detail"]
        for each in (app, twin):
            status, body = await status_of(each, late_token)
            assert status == 200 and body["hot"], "answered by the hot route, token remembered"

        started = time.monotonic()
        await publish_logout(mongo_db, settings, user, late)

        async def refused() -> bool:
            statuses = [(await status_of(each, late_token))[0] for each in (app, twin)]
            return statuses == [401, 401]

        assert await eventually(refused, timeout=10, interval=0.05)
        took = time.monotonic() - started
        print(f"logout published -> token refused by both APIs in {took:.2f} s")
        assert took <= 3

    restarted = things_app(settings)
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(restarted)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/readyz")  # waits up to 2 s for the catch-up
        assert ready.status_code == 200, ready.json()
        assert restarted.state.revocation_feed.caught_up, "ready only once caught up"
        for token in (early_token, late_token):
            status, body = await status_of(restarted, token)
            assert status == 401 and body["rule"] == "SessionEnded", "rebuilt from the topic"
        other = signer.sign(sub=user, kind="user", sid=unique("ses"))
        assert (await status_of(restarted, other))[0] == 200


async def test_a_starting_feed_reads_only_what_the_list_could_still_keep(real_infra, mongo_db):
    """A feed that keeps ended sessions 3 s starts at the broker's offsets for 3 s ago: the
    ten logouts sent before are not read again, the one sent since is."""
    settings = real_infra.settings()
    user = unique("usr")
    for _ in range(10):
        await publish_logout(mongo_db, settings, user, unique("ses"))
    await asyncio.sleep(4)
    recent = unique("ses")
    await publish_logout(mongo_db, settings, user, recent)

    revocations = SessionRevocations(keep_s=3)
    feed = RevocationFeed(real_infra.kafka_bootstrap, revocations, clock_skew_s=0)
    # this user's messages among those read: other tests publish logouts meanwhile (16 read
    # where 10 were expected at most, once, in a loaded run), so all of them prove nothing
    about_user: list[bytes] = []
    fold = feed._fold

    def noting(headers, value: bytes | None) -> None:
        if value is not None and user.encode() in value:
            about_user.append(value)
        fold(headers, value)

    feed._fold = noting
    feed.start()
    try:
        await feed.ready(wait_s=30)
        assert revocations.refusal(_claims(user, recent)) is not None
        assert len(about_user) == 1, f"read {len(about_user) - 1} of the ten older logouts"
    finally:
        await feed.stop()


async def test_the_feed_waits_for_a_broker_that_is_not_there_yet(real_infra, mongo_db, tmp_path):
    """The API starts without a broker; the feed warns, retries, and follows once it is up."""
    from structlog.testing import capture_logs

    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    revocations = SessionRevocations()
    feed = RevocationFeed(bootstrap, revocations, retry_s=0.2, max_retry_s=1.0)
    late_broker = None
    with capture_logs() as logs:
        feed.start()
        try:
            assert await eventually(lambda: _true(feed.failures >= 1), timeout=30)
            assert any(e["event"] == "session_revocations.feed_unavailable" for e in logs)
            with pytest.raises(RuntimeError, match="not yet read"):
                await feed.ready(wait_s=0.2)  # an API in this state answers /readyz 503
            late_broker = await asyncio.to_thread(broker(port, Path(tmp_path) / "b.log").start)
            await ensure_topics(bootstrap)
            settings = real_infra.settings(kafka_bootstrap=bootstrap)
            user, session = unique("usr"), unique("ses")
            await publish_logout(mongo_db, settings, user, session)
            token = _claims(user, session)
            assert await eventually(
                lambda: _true(revocations.refusal(token) is not None), timeout=30
            )
            await feed.ready(wait_s=10)
        finally:
            await feed.stop()
            if late_broker is not None:
                await asyncio.to_thread(late_broker.stop)


def _claims(user: str, session: str) -> AccessClaims:
    now = int(time.time())
    return AccessClaims(sub=user, sid=session, iat=now, exp=now + 900)


async def _true(value: bool) -> bool:
    return value
