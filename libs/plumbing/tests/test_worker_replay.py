import asyncio
import os
import signal

from studyshare.contracts.topics import topic_for_aggregate
from studyshare.plumbing.kafka import producer
from studyshare.plumbing.projection import GenerationPointer
from studyshare.plumbing.replay import replay_projection
from studyshare.plumbing.testing import unique

from .conftest import otp_failures
from .kafka_reading import eventually
from .tally_service import Tally


async def publish_raw(settings, envelopes) -> None:
    """Publish envelopes straight to Kafka, as the relay would (also used to redeliver)."""
    kafka = producer(settings)
    await kafka.start()
    try:
        for envelope in envelopes:
            await kafka.send_and_wait(
                topic_for_aggregate(envelope.aggregate_type),
                key=envelope.aggregate_id.encode(),
                value=envelope.to_json_bytes(),
            )
    finally:
        await kafka.stop()


async def test_worker_applies_events_delivered_twice_once_and_commits_after_storing(
    real_infra, mongo_db, tally_process
):
    settings = real_infra.settings()
    buckets = [unique("bkt") for _ in range(5)]
    events = [e for b in buckets for e in otp_failures(b, 10, correlation_id=unique("corr"))]
    await publish_raw(settings, events)
    await publish_raw(settings, events)  # every event delivered a second time

    worker = tally_process("worker", mongo_db.name)
    counts = mongo_db["tally.g0.counts"]

    async def applied():
        docs = await counts.find({"_id": {"$in": buckets}}).to_list(None)
        return len(docs) == 5 and all(d["n"] >= 10 for d in docs)

    assert await eventually(applied, timeout=90)

    # a restarted worker resumes from committed offsets; a third delivery changes nothing
    worker.terminate()
    worker.wait(30)
    await publish_raw(settings, events[:7])
    tally_process("worker", mongo_db.name)
    marker = unique("bkt")
    await publish_raw(settings, otp_failures(marker, 1))
    assert await eventually(lambda: counts.find_one({"_id": marker}), timeout=90)
    docs = await counts.find({"_id": {"$in": buckets}}).to_list(None)
    assert sorted(d["n"] for d in docs) == [10] * 5
    applied_ids = await mongo_db["tally.g0.applied"].distinct(
        "event_id", {"aggregate_id": {"$in": buckets}}
    )
    assert len(applied_ids) == 50
    assert (
        await mongo_db["tally.g0.applied"].count_documents({"aggregate_id": {"$in": buckets}}) == 50
    )


async def test_replay_rebuilds_into_a_fresh_generation_equal_to_the_live_one(
    real_infra, mongo_db, tally_process
):
    settings = real_infra.settings()
    buckets = [unique("bkt") for _ in range(4)]
    await publish_raw(settings, [e for b in buckets for e in otp_failures(b, 6)])
    tally_process("worker", mongo_db.name)
    live = mongo_db["tally.g0.counts"]

    async def caught_up():
        docs = await live.find({"_id": {"$in": buckets}}).to_list(None)
        return len(docs) == 4 and all(d["n"] == 6 for d in docs)

    assert await eventually(caught_up, timeout=90)
    await asyncio.sleep(1.0)
    # this test's buckets only: tests running beside it publish to the same topic meanwhile
    # (a snapshot of theirs taken now differs from the replay's, taken later)
    mine = {"_id": {"$in": buckets}}
    live_docs = sorted(await live.find(mine).to_list(None), key=lambda d: d["_id"])

    generation, applied = await replay_projection(
        Tally(), mongo_db, settings.kafka_bootstrap, idle_s=1.5
    )
    assert generation == 1
    assert applied >= 24
    assert await GenerationPointer(mongo_db, "tally").current() == 1
    rebuilt = sorted(
        await mongo_db["tally.g1.counts"].find(mine).to_list(None), key=lambda d: d["_id"]
    )
    assert rebuilt == live_docs and len(rebuilt) == 4
    assert "tally.g0.counts" not in await mongo_db.list_collection_names(), "old generation gone"


async def test_worker_killed_mid_stream_loses_nothing_and_applies_each_event_once(
    real_infra, mongo_db, tally_process
):
    """Offsets are committed only after the effect is stored: a kill -9 in the middle of the
    stream, then a restart, ends with every event applied exactly once."""
    settings = real_infra.settings()
    buckets = [unique("bkt") for _ in range(40)]
    await publish_raw(settings, [e for b in buckets for e in otp_failures(b, 50)])
    applied = mongo_db["tally.g0.applied"]
    worker = tally_process("worker", mongo_db.name)

    async def some_applied():
        return await applied.count_documents({"aggregate_id": {"$in": buckets}}) >= 200

    assert await eventually(some_applied, timeout=90, interval=0.02)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert await applied.count_documents({"aggregate_id": {"$in": buckets}}) < 2000

    tally_process("worker", mongo_db.name)

    async def all_applied():
        return await applied.count_documents({"aggregate_id": {"$in": buckets}}) >= 2000

    assert await eventually(all_applied, timeout=120)
    await asyncio.sleep(1)
    assert await applied.count_documents({"aggregate_id": {"$in": buckets}}) == 2000
    counts = await mongo_db["tally.g0.counts"].find({"_id": {"$in": buckets}}).to_list(None)
    assert sorted(d["n"] for d in counts) == [50] * 40


async def test_worker_log_is_one_json_object_per_line(
    real_infra, mongo_db, tally_process, service_processes
):
    """faust's start-up spinner must not glue a terminal escape to the next JSON log line
    (log readers parse each line that starts with `{`)."""
    tally_process("worker", mongo_db.name)
    marker = unique("bkt")
    await publish_raw(real_infra.settings(), otp_failures(marker, 1))
    counts = mongo_db["tally.g0.counts"]
    assert await eventually(lambda: counts.find_one({"_id": marker}), timeout=90)
    (log_file,) = service_processes.log_dir.glob("worker-*.log")
    text = log_file.read_text(errors="replace")
    assert "event.applied" in text
    assert "\x1b" not in text, "a terminal escape in the worker's log"
