"""The outbox relay: publishes stored events to Kafka in order, at least once.

It reads unpublished events oldest first, sends each keyed by its aggregate id (so one
aggregate's events land on one partition, in version order), waits until the broker has
acknowledged the whole batch and only then marks the batch published. A crash between the two
re-sends the batch; consumers skip what they have already applied.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge
from pymongo.asynchronous.database import AsyncDatabase
from studyshare.plumbing.eventstore import EVENTS_COLLECTION
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

PUBLISHED = Counter("studyshare_relay_published_total", "Events published by the relay", ["topic"])
LAG = Gauge("studyshare_relay_batch_size", "Events in the last relay batch")

_ENVELOPE_FIELDS = (
    "event_type",
    "schema_version",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "actor",
    "correlation_id",
    "causation_id",
    "payload",
)


def message_value(doc: dict[str, Any]) -> bytes:
    """The envelope's JSON, straight from the stored document (no model round trip)."""
    import json

    body = {"event_id": doc["_id"], **{k: doc.get(k) for k in _ENVELOPE_FIELDS}}
    occurred = body["occurred_at"]
    if isinstance(occurred, datetime):
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        body["occurred_at"] = occurred.isoformat()
    return json.dumps(body, separators=(",", ":"), default=str).encode()


class OutboxRelay:
    def __init__(
        self,
        db: AsyncDatabase,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 500,
        idle_poll_s: float = 0.05,
        collection: str = EVENTS_COLLECTION,
    ) -> None:
        self.events = db[collection]
        self.producer = producer
        self.batch_size = batch_size
        self.idle_poll_s = idle_poll_s
        self._stopping = asyncio.Event()

    async def publish_batch(self) -> int:
        """Publish one batch of unpublished events; return how many were published."""
        cursor = (
            self.events.find({"published": False})
            .sort([("recorded_at", 1), ("aggregate_id", 1), ("aggregate_version", 1)])
            .limit(self.batch_size)
        )
        docs = await cursor.to_list(self.batch_size)
        if not docs:
            return 0
        LAG.set(len(docs))
        futures = []
        for doc in docs:
            futures.append(
                await self.producer.send(
                    doc["topic"],
                    key=doc["aggregate_id"].encode(),
                    value=message_value(doc),
                    headers=[
                        ("event_type", doc["event_type"].encode()),
                        ("correlation_id", (doc.get("correlation_id") or "").encode()),
                    ],
                )
            )
        await asyncio.gather(*futures)
        await self.events.update_many(
            {"_id": {"$in": [d["_id"] for d in docs]}},
            {"$set": {"published": True, "published_at": datetime.now(UTC)}},
        )
        for doc in docs:
            PUBLISHED.labels(doc["topic"]).inc()
        log.debug("relay.published", count=len(docs))
        return len(docs)

    async def run(self) -> None:
        """Publish until stopped; poll briefly when the outbox is empty."""
        while not self._stopping.is_set():
            try:
                published = await self.publish_batch()
            except Exception:
                log.exception("relay.batch_failed")
                published = 0
                await asyncio.sleep(1)
            if published < self.batch_size:
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.idle_poll_s)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        self._stopping.set()
