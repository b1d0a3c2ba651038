"""How long the notify sender's claim takes as its history of delivery records grows: the
sender asks it every `sender_poll_s` (0.25 s) while idle, so its cost is paid four times a
second for ever.

    uv run python -m bench.notify_claim [SIZES]   (default 0,10000,50000 records delivered)

For each size: that many `sent` records in `deliveries` (the store's indexes made), then the
mean of 20 claims that find nothing due, and of 20 that each take one of 20 due messages. Its
own database, stopped by PID.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from pymongo import AsyncMongoClient

from bench.harness import local_infra
from studyshare.notify.adapters.deliveries import DELIVERIES, DeliveryStore

LEASE = timedelta(seconds=30)
ROUNDS = 20


def _records(n: int, state: str, due_at: datetime) -> list[dict]:
    return [
        {"_id": uuid.uuid4().hex, "state": state, "due_at": due_at, "created_at": due_at}
        for _ in range(n)
    ]


async def measure(mongo_url: str, sizes: list[int]) -> None:
    client = AsyncMongoClient(mongo_url)
    store = DeliveryStore(client.notify_bench)
    await store.ensure_indexes()
    records = client.notify_bench[DELIVERIES]
    now = datetime.now(UTC)
    print("delivered records | claim, nothing due (ms) | claim, one due (ms)")
    for size in sizes:
        missing = _records(size - await records.count_documents({"state": "sent"}), "sent", now)
        for start in range(0, len(missing), 10_000):
            await records.insert_many(missing[start : start + 10_000], ordered=False)
        started = time.perf_counter()
        for _ in range(ROUNDS):
            assert await store.claim(now, LEASE) is None
        idle = (time.perf_counter() - started) / ROUNDS
        await records.insert_many(_records(ROUNDS, "pending", now - timedelta(minutes=1)))
        started = time.perf_counter()
        for _ in range(ROUNDS):
            claimed = await store.claim(now, LEASE)
            assert claimed is not None
            await records.update_one({"_id": claimed["_id"]}, {"$set": {"state": "sent"}})
        busy = (time.perf_counter() - started) / ROUNDS
        print(f"{size:>17,} | {idle * 1000:>23.1f} | {busy * 1000:>19.1f}", flush=True)
    await client.close()


def main() -> None:
    sizes = [int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "0,10000,50000").split(",")]
    with local_infra() as local:
        asyncio.run(measure(local.mongo_url, sizes))


if __name__ == "__main__":
    main()
