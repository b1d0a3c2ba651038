"""Replay (point 4): the projection rebuilt from offset 0 equals the live one.

The stream chain links an aggregate's entries in version order, which Kafka keeps, so the
entries (hashes included) are the same whatever the interleaving of partitions and topics;
only the ledger fields (`seq`, `chain_hash`, `prev_chain_hash`, `recorded_at`) belong to a
generation and are left out of the comparison.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
import zlib

from studyshare.audit.adapters.projections import AuditLogProjection
from studyshare.audit.adapters.store import AuditStore
from studyshare.audit.domain.chain import VOLATILE
from studyshare.audit.service_layer.rebuild import rebuild_from_envelopes
from studyshare.plumbing.kafka import producer
from studyshare.plumbing.projection import GenerationPointer, collection_name
from studyshare.plumbing.replay import replay_projection
from studyshare.plumbing.testing import stop_processes

from .scenario import full_story

COMPARED = ("entries", "buckets", "studies", "references")


async def snapshot(db, generation: int) -> dict[str, dict[str, dict]]:
    out = {}
    for name in COMPARED:
        coll = db[collection_name("audit_log", generation, name)]
        out[name] = {
            str(d["_id"]): {k: v for k, v in d.items() if k not in VOLATILE}
            async for d in coll.find({})
        }
    return out


def other_interleaving(events):
    """Another order a consumer may see: per-aggregate order kept, aggregates shuffled."""
    return sorted(events, key=lambda e: (e.topic[::-1], zlib.crc32(e.aggregate_id.encode()) % 5))


async def test_rebuild_in_another_interleaving_equals_the_first(mongo_db):
    stories = [full_story() for _ in range(3)]
    live_order = [e for s, _ in stories for e in s.events]
    replay_order = other_interleaving(live_order)
    assert [e.event_id for e in replay_order] != [e.event_id for e in live_order]
    live_gen, n1 = await rebuild_from_envelopes(mongo_db, live_order, batch_size=13, switch=True)
    replay_gen, n2 = await rebuild_from_envelopes(mongo_db, replay_order, batch_size=50)
    assert n1 == n2 == len(live_order)
    live, rebuilt = await snapshot(mongo_db, live_gen), await snapshot(mongo_db, replay_gen)
    assert live["entries"] and live == rebuilt
    await GenerationPointer(mongo_db, "audit_log").switch(replay_gen)
    report = await AuditStore(mongo_db).verify()
    assert report["study_log"].ok, report["study_log"].problems


async def test_redelivered_events_are_applied_once(mongo_db):
    story, _ = full_story()
    generation, applied = await rebuild_from_envelopes(
        mongo_db, story.events + story.events[5:15], batch_size=9, switch=True
    )
    assert applied == len(story.events)
    assert await mongo_db[collection_name("audit_log", generation, "entries")].count_documents(
        {}
    ) == len(story.events)


async def publish(settings, events) -> None:
    kafka = producer(settings)
    await kafka.start()
    try:
        for e in events:
            await kafka.send(e.topic, e.to_json_bytes(), key=e.aggregate_id.encode())
        await kafka.flush()
    finally:
        await kafka.stop()


async def wait_for(check, timeout: float = 120, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(interval)
    return await check()


async def test_worker_subprocess_then_replay_command_rebuilds_an_equal_log(
    real_infra, mongo_db, tmp_path
):
    """The real worker consumes every topic; `python -m studyshare.audit replay audit_log`
    rebuilds generation 1 from offset 0 and switches; it equals what the worker built."""
    stories = [full_story() for _ in range(2)]
    events = [e for s, _ in stories for e in s.events]
    await publish(real_infra.settings(), events)
    env = {
        **os.environ,
        "STUDYSHARE_SERVICE_NAME": f"audit-{uuid.uuid4().hex[:8]}",
        "STUDYSHARE_KAFKA_BOOTSTRAP": real_infra.kafka_bootstrap,
        "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
        "STUDYSHARE_DATABASE": mongo_db.name,
        "STUDYSHARE_ENVIRONMENT": "test",
        "STUDYSHARE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "STUDYSHARE_KAFKA_REBALANCE_TIMEOUT_MS": "6000",
    }
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "studyshare.audit", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        live = mongo_db[collection_name("audit_log", 0, "entries")]
        ours = {"event_id": {"$in": [str(e.event_id) for e in events]}}

        async def caught_up():
            return await live.count_documents(ours) == len(events)

        assert await wait_for(caught_up, timeout=180), (tmp_path / "worker.log").read_text()[-3000:]
        stable = -1
        while (count := await live.count_documents({})) != stable:  # other tests' events too
            stable = count
            await asyncio.sleep(2)
        before = await snapshot(mongo_db, 0)

        replay = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "studyshare.audit", "replay", "audit_log"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert replay.returncode == 0, replay.stderr[-3000:]
        assert "generation 1 live" in replay.stdout
        assert await GenerationPointer(mongo_db, "audit_log").current() == 1
        indexes = await mongo_db[collection_name("audit_log", 1, "entries")].index_information()
        assert any(spec["key"] == [("seq", 1)] and spec.get("unique") for spec in indexes.values())
        assert any(spec["key"][0] == ("study_uids", 1) for spec in indexes.values())
        after = await snapshot(mongo_db, 1)
        assert before["entries"] and after == before
        report = await AuditStore(mongo_db).verify()
        assert report["study_log"].ok, report["study_log"].problems

        late, late_ids = full_story()
        await publish(real_infra.settings(), late.events)
        rebuilt = mongo_db[collection_name("audit_log", 1, "entries")]

        async def worker_writes_the_new_generation():
            return await rebuilt.count_documents(
                {"study_uids": late_ids["uid"]}
            ) > 0 and await rebuilt.count_documents(
                {"event_id": {"$in": [str(e.event_id) for e in late.events]}}
            ) == len(late.events)

        assert await wait_for(worker_writes_the_new_generation, timeout=120)
    finally:
        stop_processes([worker], 20)


async def test_kafka_replay_switches_to_a_generation_that_already_has_its_indexes(
    real_infra, mongo_db
):
    """Indexes are built before the switch: the audit worker builds them only for a generation
    that is live when it sees a batch, so nobody else would build them after a replay."""
    story, ids = full_story()
    await publish(real_infra.settings(), story.events)
    generation, applied = await replay_projection(
        AuditLogProjection(), mongo_db, real_infra.kafka_bootstrap, idle_s=1.0
    )
    assert applied >= len(story.events)
    assert await GenerationPointer(mongo_db, "audit_log").current() == generation
    entries = mongo_db[collection_name("audit_log", generation, "entries")]
    keys = [spec["key"] for spec in (await entries.index_information()).values()]
    assert [("seq", 1)] in keys and [("study_uids", 1), ("occurred_at", 1)] in keys
    assert await entries.count_documents({"study_uids": ids["uid"]}) > 0
