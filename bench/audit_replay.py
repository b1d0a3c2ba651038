"""Audit replay throughput vs. a raw bulk insert of the same documents (prints figures).

    uv run python bench/audit_replay.py [stories] [batch_size]

Starts its own SecantusDB on a free port. Each story is ~36 events of one study's life
(services/audit/tests/scenario.py). "raw" inserts the very entry documents the audit
projection writes, with `insert_many` in batches; "audit load" applies the envelopes through
the projection runner (transactions, checkpoints, chains, side tables); the index build is
what a rebuilt generation needs before it goes live.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from pymongo import AsyncMongoClient

from bench.harness import Figure, render
from studyshare.audit.domain.chain import GENESIS, Ledger, seal
from studyshare.audit.domain.entries import build_entry
from studyshare.audit.entrypoints.projections import AuditLogProjection, ensure_indexes
from studyshare.plumbing import infra
from studyshare.plumbing.logging import configure_logging
from studyshare.plumbing.projection import ProjectionRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "services/audit/tests"))
from scenario import full_story


async def measure(stories: int = 300, batch: int = 5000) -> Figure:
    """Rebuild (load + index build) vs raw insert_many of the same entry documents."""
    configure_logging("bench", "WARNING", True)
    workdir = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    port = infra.free_port()
    database = infra.database(port, workdir / "db", workdir / "db.log").start()
    try:
        client = AsyncMongoClient(infra.mongo_url(port), tz_aware=True)
        events = [e for _ in range(stories) for e in full_story()[0].events]
        n = len(events)
        docs, ledger, last = [], Ledger(), {}
        for e in events:
            entry = seal(build_entry(e), last.get(e.aggregate_id, GENESIS))
            last[e.aggregate_id] = entry["hash"]
            docs.append(ledger.record(entry))

        started = time.perf_counter()
        raw = client["bench_raw"]["entries"]
        for i in range(0, n, batch):
            await raw.insert_many(docs[i : i + batch], ordered=True)
        raw_s = time.perf_counter() - started

        db = client["bench_audit"]
        runner = ProjectionRunner(AuditLogProjection(), db)
        started = time.perf_counter()
        for i in range(0, n, batch):
            await runner.apply_batch(events[i : i + batch], generation=1)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        await ensure_indexes(db, 1)
        index_s = time.perf_counter() - started

        await client.close()
    finally:
        database.stop()
    rebuilt = n / (load_s + index_s)
    return Figure(
        "audit replay (rebuild incl. index build)",
        rebuilt,
        n / raw_s,
        "events/s",
        ">= 0.5 x raw insert",
        rebuilt * raw_s / n >= 0.5,
        f"{n} events; without the index build {n / load_s:,.0f} events/s",
    )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(render([asyncio.run(measure(*(args + [300, 5000][len(args) :])))]))
