"""Outbox relay throughput vs. a raw aiokafka producer on the same broker."""

from __future__ import annotations

import asyncio
import time

from pymongo import AsyncMongoClient

from bench.harness import Figure, LocalInfra
from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import OTPFailed
from studyshare.plumbing.eventstore import EventStore, envelope_for, to_document
from studyshare.plumbing.kafka import ensure_topics, producer
from studyshare.plumbing.relay import OutboxRelay
from studyshare.plumbing.settings import ServiceSettings

EVENTS = 20_000
AGGREGATES = 500


def _envelopes(tag: str, events: int = EVENTS):
    per = max(1, events // AGGREGATES)
    return [
        envelope_for(
            OTPFailed(bucket_id=f"bkt_{tag}_{a}", recipient_id="usr_r", consecutive_failures=v),
            aggregate_id=f"bkt_{tag}_{a}",
            aggregate_version=v,
            actor=Actor(id="usr_r"),
            correlation_id="bench",
        )
        for v in range(1, per + 1)
        for a in range(AGGREGATES)
    ]


async def drain_rate(env: LocalInfra, events: int = EVENTS, kafka=None) -> float:
    """Events/s of a fresh relay publishing a backlog of `events` stored events (over
    `AGGREGATES` aggregates)."""
    await ensure_topics(env.kafka_bootstrap)
    settings = ServiceSettings(kafka_bootstrap=env.kafka_bootstrap, mongo_url=env.mongo_url)
    client = AsyncMongoClient(env.mongo_url, tz_aware=True)
    db = client["bench_relay"]
    await client.drop_database("bench_relay")
    await EventStore(db).ensure_indexes()
    envelopes = _envelopes("relay", events)
    for i in range(0, len(envelopes), 1000):
        await db.events.insert_many(
            [to_document(e, e.occurred_at) for e in envelopes[i : i + 1000]]
        )
    own = kafka is None
    if own:
        kafka = producer(settings)
        await kafka.start()
    relay = OutboxRelay(db, kafka, batch_size=settings.relay_batch_size)
    started = time.perf_counter()
    assert await relay.drain() == len(envelopes)
    rate = len(envelopes) / (time.perf_counter() - started)
    if own:
        await kafka.stop()
    await client.drop_database("bench_relay")
    await client.close()
    return rate


async def measure(env: LocalInfra) -> Figure:
    settings = ServiceSettings(kafka_bootstrap=env.kafka_bootstrap, mongo_url=env.mongo_url)
    kafka = producer(settings)
    await kafka.start()
    relay_rate = await drain_rate(env, EVENTS, kafka)

    values = [(e.aggregate_id.encode(), e.to_json_bytes()) for e in _envelopes("raw")]
    started = time.perf_counter()
    futures = [await kafka.send("share.events", key=k, value=v) for k, v in values]
    await asyncio.gather(*futures)
    raw_rate = EVENTS / (time.perf_counter() - started)
    await kafka.stop()
    ratio = relay_rate / raw_rate
    return Figure(
        "outbox relay publish",
        relay_rate,
        raw_rate,
        "events/s",
        ">= 0.8 x raw producer",
        ratio >= 0.8,
        f"{EVENTS} events, {AGGREGATES} aggregates, a fresh relay (it scans the outbox)",
    )
