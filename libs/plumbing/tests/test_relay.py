import asyncio
import os
import signal
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import REGISTRY

from studyshare.plumbing.eventstore import EventStore, to_document
from studyshare.plumbing.kafka import producer
from studyshare.plumbing.relay import OutboxRelay
from studyshare.plumbing.testing import unique

from .conftest import otp_failures
from .kafka_reading import eventually, read_topic


@pytest.fixture
async def store(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    return store


@pytest.fixture
async def kafka(real_infra):
    kafka = producer(real_infra.settings())
    await kafka.start()
    yield kafka
    await kafka.stop()


async def append_rounds(store, buckets, versions):
    """One event per bucket and version, the buckets interleaved version by version."""
    for version in versions:
        for bucket in buckets:
            await store.append(otp_failures(bucket, 1, start=version))


async def published(real_infra, buckets, count, timeout=30.0):
    """(key, partition, envelope) of the messages of `buckets` on share.events, once `count`
    distinct events of theirs have arrived."""
    ours = set(buckets)

    def of_ours(messages):
        return [m for m in messages if m[2].aggregate_id in ours]

    messages = await read_topic(
        real_infra.kafka_bootstrap,
        "share.events",
        lambda m: len({e.event_id for *_, e in of_ours(m)}) >= count,
        timeout=timeout,
    )
    return of_ours(messages)


async def newest_event(db):
    return await db.events.find_one({}, sort=[("recorded_at", -1)])


async def _checkpoint(db):
    return await db.relay_checkpoints.find_one({"_id": "relay"})


async def checkpointed(db, event) -> bool:
    """Whether the relay's checkpoint has passed `event` (the newest of the outbox)."""
    checkpoint = await _checkpoint(db)
    newest = checkpoint and checkpoint["newest"].replace(tzinfo=UTC)
    return newest is not None and newest >= event["recorded_at"].replace(tzinfo=UTC)


def versions_by_bucket(messages):
    per_bucket = defaultdict(list)
    for *_, envelope in messages:
        per_bucket[envelope.aggregate_id].append(envelope.aggregate_version)
    return per_bucket


async def test_relay_publishes_every_event_keyed_by_aggregate_in_order(real_infra, store, kafka):
    buckets = [unique("bkt") for _ in range(3)]
    await append_rounds(store, buckets, range(1, 21))
    relay = OutboxRelay(store.db, kafka, batch_size=7)
    assert await relay.drain() == 60
    assert await relay.drain() == 0, "nothing is sent twice"

    messages = await published(real_infra, buckets, 60)
    partitions = defaultdict(set)
    for key, partition, envelope in messages:
        assert key == envelope.aggregate_id.encode()
        partitions[envelope.aggregate_id].add(partition)
    assert versions_by_bucket(messages) == {b: list(range(1, 21)) for b in buckets}
    assert all(len(p) == 1 for p in partitions.values()), "one aggregate, one partition"


async def test_relay_killed_mid_batch_loses_nothing_and_duplicates_apply_once(
    real_infra, mongo_db, store, tally_process
):
    """kill -9 the relay while it publishes, restart it: every event reaches Kafka, none is
    lost, and the worker applies the re-sent duplicates once."""
    buckets = [unique("bkt") for _ in range(50)]
    total = 50 * 40
    relay = tally_process("relay", mongo_db.name)
    for version in range(1, 41):  # 2000 appends while the relay runs, like real traffic
        await append_rounds(store, buckets, [version])
        if version == 15:
            assert await eventually(lambda: _checkpoint(mongo_db), timeout=60, interval=0.01)
            os.kill(relay.pid, signal.SIGKILL)
            relay.wait()
    last = await newest_event(mongo_db)
    assert not await checkpointed(mongo_db, last), "killed mid-stream"

    tally_process("relay", mongo_db.name)
    assert await eventually(lambda: checkpointed(mongo_db, last), timeout=120)
    messages = await published(real_infra, buckets, total, timeout=120)
    assert len({e.event_id for *_, e in messages}) == total, "every event reached Kafka"

    tally_process("worker", mongo_db.name)
    counts = mongo_db["tally.g0.counts"]

    async def all_applied():
        docs = await counts.find({"_id": {"$in": buckets}}).to_list(None)
        return len(docs) == 50 and all(d["n"] >= 40 for d in docs) and docs

    docs = await eventually(all_applied, timeout=120)
    assert docs, "the worker applied every event"
    await asyncio.sleep(1)
    docs = await counts.find({"_id": {"$in": buckets}}).to_list(None)
    assert sorted(d["n"] for d in docs) == [40] * 50, "each event applied exactly once"


async def test_a_restarted_relay_resumes_after_its_checkpoint(real_infra, store, kafka):
    first, second = unique("bkt"), unique("bkt")
    await store.append(otp_failures(first, 3))
    assert await OutboxRelay(store.db, kafka).drain() == 3
    await store.append(otp_failures(second, 2))
    await store.append(otp_failures(first, 1, start=4))
    assert await OutboxRelay(store.db, kafka).drain() == 3

    messages = await published(real_infra, [first, second], 6)
    assert sorted((e.aggregate_id, e.aggregate_version) for *_, e in messages) == sorted(
        [(first, v) for v in range(1, 5)] + [(second, 1), (second, 2)]
    )


async def test_a_relay_without_checkpoint_scans_the_outbox_then_follows_its_commits(
    real_infra, store, kafka
):
    """A fresh relay scans what the outbox holds, then follows the stream of its commits from
    before the scan; each aggregate's versions arrive in order, and every message lands on the
    partition the producer's default partitioner picks for its key."""
    buckets = [unique("bkt") for _ in range(4)]
    await append_rounds(store, buckets, range(1, 11))
    relay = OutboxRelay(store.db, kafka, batch_size=10)
    assert await relay.drain() == 40, "the scan"
    await append_rounds(store, buckets, range(11, 16))
    assert await relay.drain() == 20, "the stream, after the scan"
    assert await relay.drain() == 0
    partitions = sorted(await kafka.partitions_for("share.events"))

    messages = await published(real_infra, buckets, 60)
    for key, partition, _ in messages:
        assert partition == DefaultPartitioner()(key, partitions, partitions)
    assert versions_by_bucket(messages) == {b: list(range(1, 16)) for b in buckets}


async def test_an_event_recorded_before_the_checkpoint_and_committed_after_it_is_published(
    real_infra, store, kafka
):
    """Commit order, not the time an event was stamped: an append stamped before the newest
    event the relay has published, committed after it, is published next, once."""
    early, late = unique("bkt"), unique("bkt")
    await store.append(otp_failures(early, 3))
    relay = OutboxRelay(store.db, kafka)
    assert await relay.drain() == 3
    stamp = (await _checkpoint(store.db))["newest"] - timedelta(seconds=1)
    await store.events.insert_one(to_document(otp_failures(late, 1)[0], stamp))
    assert await relay.drain() == 1
    assert await relay.drain() == 0, "once"

    messages = await published(real_infra, [late], 1)
    assert [(e.aggregate_id, e.aggregate_version) for *_, e in messages] == [(late, 1)]


@pytest.mark.parametrize("checkpoint", ["position of another database", "time-window relay"])
async def test_a_relay_whose_position_is_gone_rescans_what_it_may_not_have_published(
    real_infra, store, kafka, checkpoint
):
    """The database cannot resume from the checkpoint's position (its log no longer holds it,
    or the database was restored or moved), or the checkpoint is the former time-window
    relay's: the relay rescans the events recorded since `rescan_s` before the checkpoint's
    newest and follows the stream on; older events are not sent again."""
    old, recent = unique("bkt"), unique("bkt")
    now = datetime.now(UTC).replace(microsecond=0)
    for bucket, age in ((old, timedelta(hours=1)), (recent, timedelta(minutes=3))):
        await store.events.insert_one(to_document(otp_failures(bucket, 1)[0], now - age))
    newest = now - timedelta(minutes=1)
    document = (
        {"position": {"_data": "00"}, "newest": newest}
        if checkpoint == "position of another database"
        else {"recorded_at": newest, "aggregate_id": recent, "version": 1}
    )
    await store.db.relay_checkpoints.insert_one({"_id": "relay", **document})
    relay = OutboxRelay(store.db, kafka, rescan_s=150)
    assert await relay.drain() == 1, "the recent event, rescanned"
    await store.append(otp_failures(recent, 1, start=2))
    assert await relay.drain() == 1, "then the stream"

    messages = await published(real_infra, [old, recent], 2)
    assert sorted((e.aggregate_id, e.aggregate_version) for *_, e in messages) == [
        (recent, 1),
        (recent, 2),
    ]


def behind() -> float:
    """`studyshare_relay_behind_seconds` as /metrics shows it."""
    return REGISTRY.get_sample_value("studyshare_relay_behind_seconds")


async def test_a_failed_publish_is_sent_again_from_the_checkpoint_in_order(
    real_infra, store, kafka
):
    """The broker refuses a batch while newer events are appended: the running relay goes
    back to its checkpoint and sends that batch again before the newer events; meanwhile its
    gauge shows it behind."""
    from aiokafka.errors import KafkaConnectionError

    buckets = [unique("bkt") for _ in range(3)]
    await append_rounds(store, buckets, range(1, 11))
    relay = OutboxRelay(store.db, kafka)
    send, refused = relay._send, []

    async def refused_once(docs):
        if not refused:
            refused.append(len(docs))
            await append_rounds(store, buckets, [11])
            raise KafkaConnectionError("broker unavailable")
        return await send(docs)

    relay._send = refused_once
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: asyncio.sleep(0, refused), timeout=30)
        assert await eventually(lambda: asyncio.sleep(0, behind() > 0), timeout=5), (
            "while failing, the relay is behind"
        )
        last = await newest_event(store.db)
        assert await eventually(lambda: checkpointed(store.db, last), timeout=60)
        assert await eventually(lambda: asyncio.sleep(0, behind() == 0), timeout=5)
    finally:
        relay.stop()
        await running

    messages = await published(real_infra, buckets, 33)
    assert versions_by_bucket(messages) == {b: list(range(1, 12)) for b in buckets}, (
        "each version once, in order"
    )


async def test_a_quiet_relay_publishes_an_appended_event_at_once(real_infra, store, kafka):
    """No polling and no settle wait: the outbox's stream of commits hands the running relay
    a new event as soon as it has committed."""
    bucket = unique("bkt")
    relay = OutboxRelay(store.db, kafka)
    running = asyncio.create_task(relay.run())
    try:
        assert await eventually(lambda: _checkpoint(store.db), timeout=30)
        await asyncio.sleep(1.5)  # the relay is idle, waiting
        await store.append(otp_failures(bucket, 2))
        appended = asyncio.get_running_loop().time()
        last = await store.events.find_one({"aggregate_id": bucket, "aggregate_version": 2})
        assert await eventually(lambda: checkpointed(store.db, last), timeout=20, interval=0.01)
        assert asyncio.get_running_loop().time() - appended < 1.0, "at once"
    finally:
        relay.stop()
        await running
