"""The outbox relay: publishes stored events to Kafka in commit order, at least once.

It follows the outbox's (the events collection's) change stream, where an appended event arrives
once its transaction commits, in commit order, at a position the database assigned (the resume
token; a counter bumped by each append would make concurrent commands conflict: 109 instead of 395
commands/s at 20 writers). Events go keyed by aggregate id to the partition the producer's
partitioner picks, in its batches; each acknowledged batch moves the checkpoint past it (a crash in
between sends it again; consumers skip what they applied). Without a usable position (none yet, or
one the database's log no longer holds) the relay takes one, scans the outbox from `rescan_s`
before the last event it published (no transaction stays open longer: 60 s), then follows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import Counter, Gauge
from pymongo import CursorType
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from studyshare.plumbing import tracing
from studyshare.plumbing.eventstore import EVENTS_COLLECTION
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

PUBLISHED = Counter(
    "studyshare_relay_published_total",
    "Events published by the relay (at least once: a re-sent batch counts again)",
    ["topic", "event_type"],
)
RESCANS = Counter("studyshare_relay_rescans_total", "Scans of the outbox after a lost position")
FAILURES = Counter("studyshare_relay_failures_total", "Batches the relay failed to publish")
BEHIND = Gauge("studyshare_relay_behind_seconds", "Age of the oldest event not yet published")

CHECKPOINTS, CHECKPOINT = "relay_checkpoints", "relay"  # the collection, the relay's document
INSERTS = [{"$match": {"operationType": "insert"}}]
#: the position is gone (ChangeStreamHistoryLost, ChangeStreamFatalError) or means nothing to
#: this database, restored or moved since (FailedToParse, InvalidResumeToken)
POSITION_LOST = frozenset({9, 260, 280, 286})
FOLLOW_WAIT_MS = 1000  # a following relay's wait for news: how soon it notices `stop`
EMPTY_ANSWER_PAUSE_S = 0.05  # a local database wakes every stream at each write: don't spin
DRAIN_WAIT_MS = 20  # `drain`: nothing new within this wait means caught up
Batch = tuple[list[dict[str, Any]], dict[str, Any] | None]  # events, the position after them


@lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: tuple[int, ...]) -> int:
    """The partition the producer's default partitioner picks for `key` (murmur2, as Java's)."""
    return DefaultPartitioner()(key, list(partitions), list(partitions))


class OutboxRelay:
    def __init__(
        self,
        db: AsyncDatabase,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 2000,
        rescan_s: float = 120.0,
    ) -> None:
        self.events, self.checkpoints = db[EVENTS_COLLECTION], db[CHECKPOINTS]
        self.producer, self.batch_size = producer, batch_size
        self._watch = partial(self.events.watch, INSERTS, batch_size=batch_size)
        self.rescan = timedelta(seconds=rescan_s)
        self._partitions: dict[str, tuple[int, ...]] = {}
        self._oldest: datetime | None = None  # read, not yet acknowledged (kept on a failure)
        self._stopping = asyncio.Event()
        BEHIND.set_function(self._behind)

    def _behind(self) -> float:
        return 0.0 if self._oldest is None else (datetime.now(UTC) - self._oldest).total_seconds()

    async def drain(self) -> int:
        """Publish everything committed until now; how many events were sent."""
        return await self._relay(follow=False)

    async def run(self) -> None:
        """Publish until stopped; after a failure, again from the checkpoint, in order."""
        while not self._stopping.is_set():
            try:
                await self._relay(follow=True)
            except Exception:
                log.exception("relay.batch_failed")
                FAILURES.inc()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)

    def stop(self) -> None:
        self._stopping.set()

    async def _relay(self, follow: bool) -> int:
        checkpoint = await self.checkpoints.find_one({"_id": CHECKPOINT}) or {}
        if checkpoint.get("position") is not None:
            try:
                return await self._publish(self._changes(checkpoint["position"], follow))
            except OperationFailure as exc:
                if exc.code not in POSITION_LOST:
                    raise
                log.warning("relay.position_lost", code=exc.code)
                RESCANS.inc()
        newest = checkpoint.get("newest", checkpoint.get("recorded_at"))  # or the window relay's
        opened = datetime.now(UTC)
        async with await self._watch() as stream:
            position = stream.resume_token
        scanned = await self._publish(self._scan(None if newest is None else newest - self.rescan))
        await self._checkpoint(position, opened)
        return scanned + await self._publish(self._changes(position, follow))

    async def _scan(self, since: datetime | None) -> AsyncIterator[Batch]:
        """The outbox (recorded since `since`) in insertion order, in batches as the database
        streams them (an exhaust cursor); naive UTC times cost half as much to decode."""
        naive = self.events.codec_options.with_options(tz_aware=False, tzinfo=None)
        cursor = self.events.with_options(codec_options=naive).find(
            {} if since is None else {"recorded_at": {"$gte": since}},
            batch_size=self.batch_size,
            cursor_type=CursorType.EXHAUST,
        )
        async with cursor.hint([("$natural", 1)]) if since else cursor:
            while docs := await cursor.to_list(self.batch_size):
                yield docs, None

    async def _changes(self, position: dict[str, Any], follow: bool) -> AsyncIterator[Batch]:
        """The events committed after `position`, in batches of what has arrived (read on while
        the batch before is sent), each with the position after it. Without `follow`, until
        nothing arrives within `DRAIN_WAIT_MS`."""
        arrived: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(2 * self.batch_size)

        async def read(stream: AsyncChangeStream) -> None:
            try:
                while not self._stopping.is_set():
                    if (change := await stream.try_next()) is not None:
                        await arrived.put(change)
                    elif not follow:
                        break
                    else:
                        await asyncio.sleep(EMPTY_ANSWER_PAUSE_S)
            finally:
                await arrived.put(None)  # the end

        wait = FOLLOW_WAIT_MS if follow else DRAIN_WAIT_MS
        async with await self._watch(resume_after=position, max_await_time_ms=wait) as stream:
            reader = asyncio.create_task(read(stream))
            try:
                changes: list[dict[str, Any]] = []
                while (change := await arrived.get()) is not None or changes:
                    if change is not None:
                        changes.append(change)
                    if change is None or arrived.empty() or len(changes) == self.batch_size:
                        yield [c["fullDocument"] for c in changes], changes[-1]["_id"]
                        changes = []
                    if change is None:
                        break
                await reader  # raises what ended the stream
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _publish(self, batches: AsyncIterator[Batch]) -> int:
        """Send each batch and checkpoint past it (if it has a position); how many were sent."""
        published = 0
        async with contextlib.aclosing(batches):
            async for docs, position in batches:
                if self._oldest is None:
                    self._oldest = min(d["recorded_at"] for d in docs).replace(tzinfo=UTC)
                await self._send(docs)
                self._oldest = None
                if position is not None:
                    await self._checkpoint(position, docs[-1]["recorded_at"])
                for (topic, type_), n in Tally((d["topic"], d["event_type"]) for d in docs).items():
                    PUBLISHED.labels(topic, type_).inc(n)
                published += len(docs)
        return published

    async def _checkpoint(self, position: dict[str, Any] | None, newest: datetime) -> None:
        """Move to `position`, after events recorded up to `newest` (see `_relay`)."""
        await self.checkpoints.update_one(
            {"_id": CHECKPOINT}, {"$set": {"position": position, "newest": newest}}, upsert=True
        )

    async def _send(self, docs: list[dict[str, Any]]) -> None:
        """Send `docs` in order as whole producer batches per partition (far less work per event
        than a `send` each) and wait for the broker to have them all."""
        batches: dict[tuple[str, int], list[Any]] = {}  # per partition, in order
        spans: list[Any] = []
        for doc in docs:
            topic, key = doc["topic"], doc["aggregate_id"].encode()
            if topic not in self._partitions:
                self._partitions[topic] = tuple(sorted(await self.producer.partitions_for(topic)))
            tp = (topic, partition_for(key, self._partitions[topic]))
            correlation = (doc.get("correlation_id") or "").encode()
            headers = [("event_type", doc["event_type"].encode()), ("correlation_id", correlation)]
            if span := tracing.producer_span(doc, tp[1], headers):
                spans.append(span)
            message = {"timestamp": None, "key": key, "value": doc["wire"], "headers": headers}
            queue = batches.setdefault(tp, [])
            if not queue or queue[-1].append(**message) is None:
                queue.append(self.producer.create_batch())
                queue[-1].append(**message)  # the first message of a batch always fits
        sent = []
        for (topic, partition), queue in batches.items():
            for batch in queue:
                batch.close()
                sent.append(await self.producer.send_batch(batch, topic, partition=partition))
        with tracing.ending(spans):
            await asyncio.gather(*sent)
