"""Rebuild a projection from offset 0 into a fresh generation, then switch over atomically.

The replay reads every partition of the projection's topics from the beginning with a plain
aiokafka consumer (no group, no committed offsets) and stops once the topics stay quiet for
`idle_s`. It never asks the broker for end offsets. The new generation is made ready for
readers (`Projection.prepare_live`: its indexes) before the pointer is switched to it.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.plumbing.kafka import decode, topic_partitions
from studyshare.plumbing.kafka_connection import KafkaConnection, kafka_connection
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.projection import Projection, ProjectionRunner

log = get_logger(__name__)


async def read_into(
    runner: ProjectionRunner,
    consumer: AIOKafkaConsumer,
    generation: int,
    idle_s: float,
    max_records: int = 5000,
) -> int:
    applied = 0
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < idle_s:
        records = await consumer.getmany(timeout_ms=100, max_records=max_records)
        batch = [e for msgs in records.values() for m in msgs if (e := decode(m.value)) is not None]
        if batch:
            applied += await runner.apply_batch(batch, generation=generation)
            quiet_since = time.monotonic()  # after storing it: a slow store is not quiet
    return applied


async def replay_projection(
    projection: Projection,
    db: AsyncDatabase,
    bootstrap: str | KafkaConnection,
    *,
    idle_s: float = 2.0,
    switch: bool = True,
) -> tuple[int, int]:
    """Rebuild into a new generation; return (generation, events applied)."""
    runner = ProjectionRunner(projection, db)
    old = await runner.pointer.current()
    new = old + 1
    await runner.drop_generation(new)
    consumer = AIOKafkaConsumer(
        **kafka_connection(bootstrap).client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(await topic_partitions(consumer, projection.topics))
        await consumer.seek_to_beginning()
        started = time.monotonic()
        applied = await read_into(runner, consumer, new, idle_s)
        log.info(
            "replay.built",
            projection=projection.name,
            generation=new,
            events=applied,
            seconds=round(time.monotonic() - started, 3),
        )
        if switch:
            await runner.prepare_live(new)  # its indexes, before any reader sees it
            await runner.pointer.switch(new)
            applied += await read_into(runner, consumer, new, idle_s)
            await runner.drop_generation(old)
            log.info("replay.switched", projection=projection.name, generation=new)
    finally:
        await consumer.stop()
    return new, applied
