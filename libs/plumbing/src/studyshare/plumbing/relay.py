"""The outbox relay: publishes stored events to Kafka in commit order, at least once.

The events collection is the outbox; the relay follows its change stream, where an appended
event arrives once its transaction has committed, in commit order, at a position the database
assigned at append time (the resume token). This is `eventsourcing`'s notification log without a
counter bumped by every writer in its transaction (on MongoDB that makes concurrent commands
conflict and run again: 109 commands/s instead of 395 at 20 concurrent writers, measured here).
No later commit overtakes an appended event, so there is no settle wait and no sweep.

Events go keyed by aggregate id to the partition the producer's partitioner picks (one aggregate,
one partition, version order), in the producer's batches; each acknowledged batch moves the
checkpoint past it (a crash in between re-sends it; consumers skip what they have applied).
Without a checkpoint the relay takes a position, scans the outbox in insertion order, then
follows from that position (what commits in between is sent twice). If the database's log no
longer holds its position, it rescans from `rescan_s` before the newest event it published: no
transaction stays open longer (`transactionLifetimeLimitSeconds`, 60 s, and clock skew).
`studyshare_relay_behind_seconds`: age of the oldest event read and not yet acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
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

CHECKPOINTS = "relay_checkpoints"
#: the position is gone (ChangeStreamHistoryLost, ChangeStreamFatalError) or means nothing to
#: this database, restored or moved since (FailedToParse, InvalidResumeToken)
POSITION_LOST = frozenset({9, 260, 280, 286})
FOLLOW_WAIT_MS = 1000  # a following relay's wait for news: how soon it notices `stop`
#: after an answer with no news (the database woke the stream for another collection's write),
#: wait before asking again: a local database answers each of its writes to every stream
EMPTY_ANSWER_PAUSE_S = 0.05
DRAIN_WAIT_MS = 20  # `drain`: nothing new within this wait means caught up
IN_FLIGHT = 3  # batches handed to the producer and not yet acknowledged
Batch = tuple[list[dict[str, Any]], dict[str, Any] | None]  # events, the position after them


@lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: tuple[int, ...]) -> int:
    """The partition the producer's default partitioner picks for `key` (murmur2, as Java's)."""
    return DefaultPartitioner()(key, list(partitions), list(partitions))


def _utc(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


class OutboxRelay:
    def __init__(
        self,
        db: AsyncDatabase,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 2000,
        rescan_s: float = 120.0,
        collection: str = EVENTS_COLLECTION,
        name: str = "relay",
    ) -> None:
        self.events = db[collection]
        self.checkpoints = db[CHECKPOINTS]
        self.producer = producer
        self.batch_size = batch_size
        self.rescan = timedelta(seconds=rescan_s)
        self.name = name
        self._partitions: dict[str, tuple[int, ...]] = {}
        self._unacknowledged: deque[datetime] = deque()  # the oldest event of each batch
        self._failing_since: datetime | None = None
        self._stopping = asyncio.Event()
        BEHIND.set_function(self._behind)

    def _behind(self) -> float:
        oldest = self._failing_since or next(iter(self._unacknowledged), None)
        return 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()

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
        checkpoint = await self.checkpoints.find_one({"_id": self.name}) or {}
        if checkpoint.get("position") is not None:
            try:
                return await self._publish(self._changes(checkpoint["position"], follow))
            except OperationFailure as exc:
                if exc.code not in POSITION_LOST:
                    raise
                log.warning("relay.position_lost", code=exc.code)
                RESCANS.inc()
        newest = checkpoint.get("newest", checkpoint.get("recorded_at"))  # or the window relay's
        since = None if newest is None else _utc(newest) - self.rescan
        opened = datetime.now(UTC)
        async with await self._watch(None, DRAIN_WAIT_MS) as stream:
            position = stream.resume_token
        scanned = await self._publish(self._scan(since))
        await self._checkpoint(position, opened)
        return scanned + await self._publish(self._changes(position, follow))

    async def _watch(self, position: dict[str, Any] | None, wait_ms: int) -> AsyncChangeStream:
        return await self.events.watch(
            [{"$match": {"operationType": "insert"}}],
            resume_after=position,
            max_await_time_ms=wait_ms,
            batch_size=self.batch_size,
        )

    async def _scan(self, since: datetime | None) -> AsyncIterator[Batch]:
        """The outbox (recorded since `since`) in insertion order, in batches as the database
        streams them (an exhaust cursor: no round trip per batch); naive UTC times cost half as
        much to decode."""
        naive = self.events.codec_options.with_options(tz_aware=False, tzinfo=None)
        cursor = self.events.with_options(codec_options=naive).find(
            {} if since is None else {"recorded_at": {"$gte": since}},
            batch_size=self.batch_size,
            cursor_type=CursorType.EXHAUST,
        )
        if since is not None:
            cursor = cursor.hint([("$natural", 1)])
        async with cursor:
            while docs := await cursor.to_list(self.batch_size):
                yield docs, None

    async def _changes(self, position: dict[str, Any], follow: bool) -> AsyncIterator[Batch]:
        """The events committed after `position`, each batch what has arrived (up to
        `batch_size`) with the position after it: read on while the previous batch is being
        published. Without `follow`, until nothing new arrives within `DRAIN_WAIT_MS`."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(2 * self.batch_size)

        async def read(stream: AsyncChangeStream) -> None:
            try:
                while not self._stopping.is_set():
                    change = await stream.try_next()
                    if change is not None:
                        await queue.put(change)
                    elif not follow:
                        break
                    else:
                        await asyncio.sleep(EMPTY_ANSWER_PAUSE_S)
            finally:
                await queue.put(None)

        wait = FOLLOW_WAIT_MS if follow else DRAIN_WAIT_MS
        async with await self._watch(position, wait) as stream:
            reader = asyncio.create_task(read(stream))
            try:
                ended = False
                while not ended:
                    if queue.empty():
                        yield [], None  # nothing has arrived: time to see the last batches home
                    if (change := await queue.get()) is None:
                        break
                    changes = [change]
                    while len(changes) < self.batch_size and not queue.empty():
                        if (change := queue.get_nowait()) is None:
                            ended = True
                            break
                        changes.append(change)
                    yield [c["fullDocument"] for c in changes], changes[-1]["_id"]
                await reader  # raises what ended the stream
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _publish(self, batches: AsyncIterator[Batch]) -> int:
        """Hand each batch to the producer as it is read, up to `IN_FLIGHT` awaiting the
        broker, and checkpoint each acknowledged batch that carries a position, in order; an
        empty batch (the source waits for news) waits for every batch sent."""
        sending: deque[tuple[list[asyncio.Future], Batch]] = deque()
        published = 0

        async def acknowledged() -> None:
            nonlocal published
            futures, (docs, position) = sending.popleft()
            await asyncio.gather(*futures)
            self._unacknowledged.popleft()
            self._failing_since = None
            if position is not None:
                newest = max(_utc(d["recorded_at"]) for d in docs)
                await self._checkpoint(position, newest)
            self._sent(docs)
            published += len(docs)

        try:
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    if batch[0]:
                        self._unacknowledged.append(min(_utc(d["recorded_at"]) for d in batch[0]))
                        sending.append((await self._enqueue(batch[0]), batch))
                    while sending and (
                        not batch[0] or len(sending) >= IN_FLIGHT or _done(sending[0][0])
                    ):
                        await acknowledged()
            while sending:
                await acknowledged()
        except BaseException:
            if self._unacknowledged and self._failing_since is None:
                self._failing_since = self._unacknowledged[0]
            for futures, _ in sending:
                for future in futures:
                    future.cancel()
            raise
        finally:
            self._unacknowledged.clear()
        return published

    async def _checkpoint(self, position: dict[str, Any] | None, newest: datetime) -> None:
        """Move to `position`, after events recorded up to `newest` (see `_relay`)."""
        await self.checkpoints.update_one(
            {"_id": self.name}, {"$set": {"position": position, "newest": newest}}, upsert=True
        )

    async def _enqueue(self, docs: list[dict[str, Any]]) -> list[asyncio.Future]:
        """Hand `docs` to the producer in order, as whole batches per partition (far less work
        per event than one `send` each); a partition's batches are delivered in order."""
        futures: list[asyncio.Future] = []
        batches: dict[tuple[str, int], Any] = {}
        spans: dict[tuple[str, int], list[Any]] = {}
        for doc in docs:
            topic, key = doc["topic"], doc["aggregate_id"].encode()
            if topic not in self._partitions:
                self._partitions[topic] = tuple(sorted(await self.producer.partitions_for(topic)))
            tp = (topic, partition_for(key, self._partitions[topic]))
            headers = [
                ("event_type", doc["event_type"].encode()),
                ("correlation_id", (doc.get("correlation_id") or "").encode()),
            ]
            span = tracing.producer_span(
                doc.get("trace"),
                *tp,
                headers,
                **{
                    "messaging.kafka.message.key": doc["aggregate_id"],
                    "messaging.message.id": doc["_id"],
                    "studyshare.event_type": doc["event_type"],
                },
            )
            message = {
                "timestamp": None,
                "key": key,
                "value": bytes(doc["wire"]),
                "headers": headers,
            }
            batch = batches.get(tp)
            if batch is None or batch.append(**message) is None:
                if batch is not None:
                    futures.append(await self._submit(batch, tp, spans.pop(tp, [])))
                batch = batches[tp] = self.producer.create_batch()
                if batch.append(**message) is None:
                    tracing.end_all([span] if span else [], ValueError("too large"))
                    raise ValueError(f"event {doc['_id']} does not fit in a producer batch")
            if span is not None:
                spans.setdefault(tp, []).append(span)
        for tp, batch in batches.items():
            futures.append(await self._submit(batch, tp, spans.pop(tp, [])))
        return futures

    async def _submit(self, batch: Any, tp: tuple[str, int], spans: list[Any]) -> asyncio.Future:
        batch.close()
        future = await self.producer.send_batch(batch, tp[0], partition=tp[1])
        if spans:
            future.add_done_callback(
                lambda done: tracing.end_all(spans, None if done.cancelled() else done.exception())
            )
        return future

    def _sent(self, docs: list[dict[str, Any]]) -> None:
        for (topic, event_type), count in Tally(
            (d["topic"], d["event_type"]) for d in docs
        ).items():
            PUBLISHED.labels(topic, event_type).inc(count)


def _done(futures: list[asyncio.Future]) -> bool:
    return all(f.done() for f in futures)
