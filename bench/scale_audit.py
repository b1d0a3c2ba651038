"""Audit replay as the events grow: events/s and peak memory of the replaying process.

Each size runs in a child process (`python -m bench.scale_audit <mongo url> <events>`) so
its `VmHWM` is the replay's own: the events (stories of ~36 events of one study's life,
`services/audit/tests/scenario.py`) built in memory, then `rebuild_from_envelopes` into a
fresh database, indexes included (what a rebuilt generation needs before it goes live).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pymongo import AsyncMongoClient

from bench.harness import LocalInfra
from bench.scale import Curve, Series, proc_status

EVENTS = tuple(
    int(s) for s in os.environ.get("BENCH_SCALE_AUDIT_EVENTS", "10000,100000").split(",")
)
DATABASE = "bench_scale_audit"


async def point(mongo_url: str, events: int) -> dict[str, float]:
    """Replay about `events` events; their rate and this process's peak memory."""
    from studyshare.audit.service_layer.rebuild import rebuild_from_envelopes
    from studyshare.plumbing.logging import configure_logging

    sys.path.insert(0, str(Path(__file__).parents[1] / "services/audit/tests"))
    from scenario import full_story

    configure_logging("bench", "WARNING", True)
    per_story = len(full_story()[0].events)
    envelopes = [e for _ in range(max(1, events // per_story)) for e in full_story()[0].events]
    client = AsyncMongoClient(mongo_url, tz_aware=True)
    await client.drop_database(DATABASE)
    started = time.perf_counter()
    _, applied = await rebuild_from_envelopes(client[DATABASE], envelopes, batch_size=5000)
    seconds = time.perf_counter() - started
    await client.drop_database(DATABASE)
    await client.close()
    return {"events": applied, "rate": applied / seconds}


def measure(env: LocalInfra, sizes: tuple[int, ...] = EVENTS) -> Curve:
    curve = Curve(
        "audit replay (rebuild_from_envelopes, indexes included)",
        "events",
        [Series("rate", "events/s", True), Series("VmHWM", "MiB", judged=False)],
        linear=False,
        note="rate should stay flat; the peak holds the events in memory, so it grows linearly",
    )
    for n in sorted(sizes):
        out = subprocess.run(
            [sys.executable, "-m", "bench.scale_audit", env.mongo_url, str(n)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = json.loads(out.strip().splitlines()[-1])
        curve.add(int(found["events"]), found["rate"], found["hwm_mib"])
        print(f"  audit replay {n:,}: {found['rate']:,.0f} events/s", file=sys.stderr)
    return curve


if __name__ == "__main__":
    found = asyncio.run(point(sys.argv[1], int(sys.argv[2])))
    found["hwm_mib"] = proc_status(os.getpid())["VmHWM"] / 1024
    print(json.dumps(found))
