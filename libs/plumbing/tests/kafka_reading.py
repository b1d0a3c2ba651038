"""Read a topic from the beginning without a consumer group (test helper)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from studyshare.contracts.envelope import EventEnvelope


async def read_topic(
    bootstrap: str, topic: str, want, timeout: float = 30.0
) -> list[tuple[bytes, int, EventEnvelope]]:
    """(key, partition, envelope) of every message, until `want(messages)` holds or time is up."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        seen: list[tuple[bytes, int, EventEnvelope]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not want(seen):
            records = await consumer.getmany(timeout_ms=200)
            for tp, msgs in records.items():
                seen.extend(
                    (m.key, tp.partition, EventEnvelope.from_json_bytes(m.value)) for m in msgs
                )
        return seen
    finally:
        await consumer.stop()


async def eventually(check, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)
