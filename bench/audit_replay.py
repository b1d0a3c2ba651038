"""Audit replay throughput vs. a raw bulk insert of the same documents (prints figures).

    PYTHONPATH=. uv run python bench/audit_replay.py [stories] [batch_size]

Starts its own SecantusDB on a free port. Each story is ~36 events of one study's life
(services/audit/tests/scenario.py). "raw" inserts the very entry documents the audit
projection writes, with `insert_many` in batches; "audit load" is `rebuild_from_envelopes`
without its last step (transactions, checkpoints, chains, side tables); the index build is that
last step, what a rebuilt generation needs before it goes live. Beside the wall times it prints
the database server's CPU seconds per phase: SecantusDB is one Python process, so the ratio of
those bounds the wall-time ratio whatever the client does.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from pymongo import AsyncMongoClient

from bench.harness import Figure, LocalInfra
from studyshare.audit.adapters.projections import (
    ENTRIES,
    AuditLogProjection,
    ensure_indexes,
)
from studyshare.audit.domain.chain import GENESIS, Ledger, seal
from studyshare.audit.domain.entries import build_entry
from studyshare.audit.service_layer.rebuild import rebuild_from_envelopes
from studyshare.plumbing import infra
from studyshare.plumbing.logging import configure_logging
from studyshare.plumbing.projection import ProjectionRunner, collection_name

sys.path.insert(0, str(Path(__file__).parents[1] / "services/audit/tests"))
from scenario import full_story


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux `/proc`): the database server's
    own work, steadier than wall time on a machine shared with other work."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(stories: int, batch: int) -> None:
    configure_logging("bench", "WARNING", True)
    workdir = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    port = infra.free_port()
    database = infra.database(port, workdir / "db", workdir / "db.log").start()
    assert database.proc is not None
    server = database.proc.pid
    try:
        client = AsyncMongoClient(infra.mongo_url(port), tz_aware=True)
        events = [e for _ in range(stories) for e in full_story()[0].events]
        n = len(events)
        docs, ledger, last = [], Ledger(), {}
        for e in events:
            entry = seal(build_entry(e), last.get(e.aggregate_id, GENESIS))
            last[e.aggregate_id] = entry["hash"]
            docs.append(ledger.record(entry))

        cpu, started = cpu_seconds(server), time.perf_counter()
        raw = client["bench_raw"]["entries"]
        for i in range(0, n, batch):
            await raw.insert_many(docs[i : i + batch], ordered=True)
        raw_s, raw_cpu = time.perf_counter() - started, cpu_seconds(server) - cpu

        db = client["bench_audit"]
        cpu, started = cpu_seconds(server), time.perf_counter()
        generation, _ = await rebuild_from_envelopes(
            db, events, batch_size=batch, build_indexes=False
        )
        load_s, load_cpu = time.perf_counter() - started, cpu_seconds(server) - cpu
        cpu, started = cpu_seconds(server), time.perf_counter()
        await ProjectionRunner(AuditLogProjection(), db).prepare_live(generation)
        index_s, index_cpu = time.perf_counter() - started, cpu_seconds(server) - cpu

        print(f"events              {n}   (database server CPU in brackets)")
        print(f"raw insert_many     {n / raw_s:8.0f} docs/s                  [{raw_cpu:.2f} s]")
        print(
            f"audit load          {n / load_s:8.0f} events/s   ratio {raw_s / load_s:.2f}   "
            f"[{load_cpu:.2f} s]"
        )
        print(
            f"audit load + index  {n / (load_s + index_s):8.0f} events/s   "
            f"ratio {raw_s / (load_s + index_s):.2f}   (index build {index_s:.1f} s "
            f"[{index_cpu:.2f} s]; server CPU ratio {raw_cpu / (load_cpu + index_cpu):.2f})"
        )
        await client.close()
    finally:
        database.stop()


async def measure(env: LocalInfra, stories: int = 150, batch: int = 5000) -> Figure:
    """`make bench`: a rebuild (`rebuild_from_envelopes`: load, then the indexes a generation
    needs to go live) vs. the same entry documents inserted raw (`insert_many`) into a
    collection of the same database server given the same indexes: like for like, what the
    database needs to hold those documents queryable. The note also gives the ratio to the
    unindexed raw insert (the index build alone costs about three times that insert)."""
    configure_logging("bench", "WARNING", True)
    client = AsyncMongoClient(env.mongo_url, tz_aware=True)
    events = [e for _ in range(stories) for e in full_story()[0].events]
    n = len(events)
    docs, ledger, last = [], Ledger(), {}
    for e in events:
        entry = seal(build_entry(e), last.get(e.aggregate_id, GENESIS))
        last[e.aggregate_id] = entry["hash"]
        docs.append(ledger.record(entry))
    for name in ("bench_raw", "bench_audit"):
        await client.drop_database(name)
    raw_db, generation = client["bench_raw"], 1
    raw = raw_db[collection_name(AuditLogProjection.name, generation, ENTRIES)]
    started = time.perf_counter()
    for i in range(0, n, batch):
        await raw.insert_many(docs[i : i + batch], ordered=True)
    insert_s = time.perf_counter() - started
    await ensure_indexes(raw_db, generation)
    raw_s = time.perf_counter() - started
    db = client["bench_audit"]
    started = time.perf_counter()
    _, applied = await rebuild_from_envelopes(db, events, batch_size=batch)
    rebuild_s = time.perf_counter() - started
    for name in ("bench_raw", "bench_audit"):
        await client.drop_database(name)
    await client.close()
    assert applied == n, (applied, n)
    ours, base = n / rebuild_s, n / raw_s
    return Figure(
        "audit replay (rebuild vs raw insert_many, both with the same indexes)",
        ours,
        base,
        "events/s",
        ">= 0.8 x raw insert",
        ours / base >= 0.8,
        f"{n} events, batches of {batch}; vs an unindexed raw insert "
        f"({n / insert_s:,.0f} docs/s) {insert_s / rebuild_s:.2f}",
    )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [300, 5000][len(args) :])))
