"""Blob store throughput, directory vs GridFS, through the store's own interface (prints figures).

    PYTHONPATH=. uv run python bench/blob_stores.py [MiB] [rounds]

Starts its own SecantusDB on a free port. Per backend and round, one object of `MiB` mebibytes
is stored as STOW-RS stores a part (written into a spool sink in 1 MiB pieces from a worker
thread, then placed under its key) and read back as WADO-RS serves it (`chunks()`), then one
1 MiB slice is read through the seekable file view (as a frame is). Medians of the rounds.
SecantusDB is one Python process on the same cores: GridFS figures here are a floor, not
MongoDB's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pymongo import AsyncMongoClient

from studyshare.plumbing import infra
from studyshare.study_store.adapters.blobstore import BlobStore, DirectoryBlobStore, opened
from studyshare.study_store.adapters.gridfs_blobstore import GridFSBlobStore

MiB = 1024 * 1024


def spool(store: BlobStore, data: bytes):
    sink = store.spool()
    for start in range(0, len(data), MiB):
        sink.write(data[start : start + MiB])
    sink.close()
    return sink


def slice_of(store: BlobStore, key: str, position: int) -> int:
    with opened(store, key) as source:
        source.seek(position)
        return len(source.read(MiB))


async def measure(store: BlobStore, data: bytes, rounds: int) -> dict[str, float]:
    stores, reads, slices = [], [], []
    for n in range(rounds):
        started = time.perf_counter()
        sink = await asyncio.to_thread(spool, store, data)
        key = await store.place(sink.spooled, "1.2.3", "1.2.3.4", f"1.2.3.4.{n + 1}")
        await asyncio.to_thread(sink.discard)
        stores.append(time.perf_counter() - started)
        started = time.perf_counter()
        size = 0
        async for chunk in store.chunks(key):
            size += len(chunk)
        reads.append(time.perf_counter() - started)
        assert size == len(data)
        started = time.perf_counter()
        assert await asyncio.to_thread(slice_of, store, key, len(data) // 2 + 12_345) == MiB
        slices.append(time.perf_counter() - started)
        data = data[1:] + data[:1]  # other content: another key
    mib = len(data) / MiB
    return {
        "store MiB/s": mib / statistics.median(stores),
        "retrieve MiB/s": mib / statistics.median(reads),
        "1 MiB slice ms": statistics.median(slices) * 1000,
    }


async def main(size_mib: int, rounds: int) -> None:
    data = os.urandom(size_mib * MiB)
    workdir = Path(tempfile.mkdtemp(prefix="bench-blobs-"))
    port = infra.free_port()
    database = infra.database(port, workdir / "db", workdir / "secantus.log").start()
    client = AsyncMongoClient(infra.mongo_url(port), tz_aware=True)
    try:
        backends: list[BlobStore] = [
            DirectoryBlobStore(workdir / "blobs"),
            GridFSBlobStore(client["bench_blobs"]),
        ]
        print(f"{size_mib} MiB object, median of {rounds} rounds")
        for store in backends:
            await store.setup()
            figures = await measure(store, data, rounds)
            print(f"{store.backend:>9}: " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()))
    finally:
        await client.close()
        database.stop()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [32, 5][len(args) :])))
