"""The outbox relay: publishes stored events to Kafka in order, at least once.

The events collection is the outbox. The relay follows it in `recorded_at` order, reading
bounded time windows up to `now - settle` (so appends still committing are not overtaken),
sends each event keyed by its aggregate id (one aggregate, one partition, version order), waits
for the broker's acknowledgement of the whole batch, and only then moves its checkpoint: one
write per batch, none per event. A crash between sending and the checkpoint re-sends the batch;
consumers skip what they have already applied.

An append that commits later than `settle` after its `recorded_at` would fall behind the
checkpoint; the sweep recounts the recent past every `sweep_interval_s` and publishes whatever
it finds missing, so such an event is late but never lost.

A relay without a checkpoint first scans the outbox (up to `FIRST_READ` events) in insertion
order, a plain collection scan, the database's cheapest read: it publishes each batch while the
database streams the next and checkpoints once all are acknowledged; the windows carry on from
there. Insertion order keeps each aggregate's versions in order: version n+1 is only appended
once version n has committed. A scan that read the whole outbox checkpoints its newest event.
A scan cut short by `FIRST_READ` has left events inserted after it whose position may sort
before its newest (the same millisecond, or stamped up to `settle` earlier): its checkpoint is
`settle` before its newest event, and the windows skip what the scan already sent.

A quiet relay does not poll: a change stream of the outbox wakes it when an event is
inserted, and it reads once that event has settled.

An event appended inside a trace (`plumbing.tracing`) is sent under a producer span, a child of
the trace context stored with it, whose `traceparent` goes into the message headers; the span
ends when the broker has acknowledged the message.

`studyshare_relay_behind_seconds` is the age of the oldest event not yet published: 0 once a
drain has published everything settled, the age of the batch just acknowledged while it works
through a backlog, and the age of the first unpublished event while publishing fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter as Tally
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from opentelemetry.trace import SpanKind, set_span_in_context
from prometheus_client import Counter, Gauge
from pymongo import CursorType
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.plumbing import tracing
from studyshare.plumbing.eventstore import EVENTS_COLLECTION
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

PUBLISHED = Counter(
    "studyshare_relay_published_total",
    "Events published by the relay (at least once: a re-sent batch counts again)",
    ["topic", "event_type"],
)
SWEPT = Counter("studyshare_relay_swept_total", "Late events found by the sweep")
FAILURES = Counter("studyshare_relay_failures_total", "Batches the relay failed to publish")
BEHIND = Gauge("studyshare_relay_behind_seconds", "Age of the oldest event not yet published")

CHECKPOINTS = "relay_checkpoints"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
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

WATCH_RETRY_S = 5.0  # polling in between
FIRST_READ = 50_000  # events the first scan of a relay without a checkpoint reads at most
READ_AHEAD = 2  # batches read from the database while the current one is published
Position = tuple[datetime, str, int]
RELAY_FIELDS = {
    "topic": 1,
    "aggregate_id": 1,
    "aggregate_version": 1,
    "recorded_at": 1,
    "event_type": 1,
    "correlation_id": 1,
    "wire": 1,
    "trace": 1,
}


_stored_position = itemgetter("recorded_at", "aggregate_id", "aggregate_version")


def position(doc: dict[str, Any]) -> Position:
    """Total order of the outbox that keeps each aggregate's versions in order."""
    recorded = doc["recorded_at"]
    if recorded.tzinfo is None:
        recorded = recorded.replace(tzinfo=UTC)
    return recorded, doc["aggregate_id"], doc["aggregate_version"]


def message_value(doc: dict[str, Any]) -> bytes:
    """The envelope's JSON: stored at append time, or rebuilt for an event stored without it."""
    if doc.get("wire"):
        return bytes(doc["wire"])
    body = {"event_id": doc["_id"], **{k: doc.get(k) for k in _ENVELOPE_FIELDS}}
    occurred = body["occurred_at"]
    if isinstance(occurred, datetime):
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        body["occurred_at"] = occurred.isoformat()
    return json.dumps(body, separators=(",", ":"), default=str).encode()


@lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition aiokafka's default partitioner picks for `key` (murmur2, as in Java)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class OutboxRelay:
    def __init__(
        self,
        db: AsyncDatabase,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 2000,
        idle_poll_s: float = 0.05,
        settle_s: float = 0.25,
        sweep_window_s: float = 60.0,
        sweep_interval_s: float = 1.0,
        collection: str = EVENTS_COLLECTION,
        name: str = "relay",
    ) -> None:
        self.events = db[collection]
        self.checkpoints = db[CHECKPOINTS]
        self.producer = producer
        self.batch_size = batch_size
        self.idle_poll_s = idle_poll_s
        self.settle = timedelta(seconds=settle_s)
        self.sweep_window = timedelta(seconds=sweep_window_s)
        self.sweep_interval_s = sweep_interval_s
        self.name = name
        self.span = timedelta(seconds=5)
        self._cursor: Position | None = None
        self._recent: OrderedDict[str, datetime] = OrderedDict()
        self._last_sweep = 0.0
        self._stopping = asyncio.Event()
        self._appended = asyncio.Event()
        self._watching = False

    async def cursor(self) -> Position:
        if self._cursor is None:
            doc = await self.checkpoints.find_one({"_id": self.name})
            self._cursor = (
                (doc["recorded_at"].replace(tzinfo=UTC), doc["aggregate_id"], doc["version"])
                if doc
                else (EPOCH, "", 0)
            )
        return self._cursor

    async def _window(
        self, start: datetime, upper: datetime
    ) -> tuple[list[dict[str, Any]], datetime]:
        """Events in [start, end] for one time span, and `end`; the span follows the density
        of the outbox so the next read holds about one batch."""
        end = min(upper, start + self.span)
        docs = await self.events.find(
            {"recorded_at": {"$gte": start, "$lte": end}}, RELAY_FIELDS, batch_size=self.batch_size
        ).to_list(None)
        read = end - start
        if docs and read > timedelta(0):
            wanted = read * (self.batch_size / len(docs))
            self.span = min(max(wanted, timedelta(milliseconds=1)), self.span * 4)
        elif end < upper:  # a quiet stretch
            self.span = min(self.span * 4, timedelta(days=30))
        return docs, end

    async def _scan(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The first `FIRST_READ` events of the outbox in insertion order, in batches as the
        database streams them (an exhaust cursor: no round trip per batch). Finding the oldest
        event alone would cost the database a scan of the whole outbox; whole documents cost
        it less than a projection of them, and naive UTC times cost the relay half as much to
        decode."""
        naive = self.events.codec_options.with_options(tz_aware=False, tzinfo=None)
        cursor = self.events.with_options(codec_options=naive).find(
            {}, batch_size=self.batch_size, cursor_type=CursorType.EXHAUST
        )
        left = FIRST_READ
        try:
            while left > 0 and (docs := await cursor.to_list(min(self.batch_size, left))):
                left -= len(docs)
                yield docs
        finally:
            await cursor.close()

    async def _publish_scan(self) -> int:
        """Publish the settled events of the first scan of a relay without a checkpoint (see
        `_scan`); checkpoint once every batch is acknowledged: at its newest position when the
        scan read the whole outbox, `settle` earlier when `FIRST_READ` cut it short (see the
        module's docstring). Batches are let go once acknowledged."""
        upper = datetime.now(UTC) - self.settle
        settled = upper.replace(tzinfo=None)  # the scan decodes stored times as naive UTC
        sending: deque[tuple[list[asyncio.Future], list[dict[str, Any]]]] = deque()
        newest: Position | None = None
        read = total = 0
        async with contextlib.aclosing(read_ahead(self._scan(), READ_AHEAD)) as batches:
            async for batch in batches:
                read += len(batch)
                docs = [d for d in batch if d["recorded_at"] <= settled]
                if docs:
                    sending.append((await self._enqueue(docs), docs))
                    last = position(max(docs, key=_stored_position))
                    newest = last if newest is None else max(newest, last)
                    total += len(docs)
                while sending and all(f.done() for f in sending[0][0]):
                    self._delivered(*sending.popleft())
        while sending:
            futures, docs = sending.popleft()
            await asyncio.gather(*futures)
            self._delivered(futures, docs)
        if newest is None:
            return 0
        if read == FIRST_READ:  # cut short: later inserts may sort before `newest`
            newest = (newest[0] - self.settle, "", 0)
        await self._checkpoint(newest)
        self._cursor = newest
        return total

    def _delivered(self, futures: list[asyncio.Future], docs: list[dict[str, Any]]) -> None:
        for future in futures:
            future.result()  # raises if the broker refused the batch
        self._sent(docs)

    async def _next(self) -> list[dict[str, Any]]:
        """The next settled, unsent events after the checkpoint, in outbox order (moves the
        read cursor)."""
        cursor = await self.cursor()
        upper = datetime.now(UTC) - self.settle
        while EPOCH < cursor[0] <= upper:
            docs, end = await self._window(cursor[0], upper)
            docs = sorted((d for d in docs if position(d) > cursor), key=position)
            unsent = [d for d in docs if d["_id"] not in self._recent]
            if unsent:
                self._cursor = position(unsent[-1])
                return unsent
            if docs:  # all sent already (after a scan cut short)
                cursor = self._cursor = position(docs[-1])
                continue
            if end >= upper:
                break
            cursor = (end, "", 0)
            self._cursor = cursor
        return []

    async def _checkpoint(self, at: Position) -> None:
        await self.checkpoints.update_one(
            {"_id": self.name},
            {"$set": {"recorded_at": at[0], "aggregate_id": at[1], "version": at[2]}},
            upsert=True,
        )
        BEHIND.set((datetime.now(UTC) - at[0]).total_seconds())

    async def drain(self) -> int:
        """Publish everything settled now: the first scan of a relay without a checkpoint,
        then windows. The next window is read while the current one is handed to the producer
        and acknowledged; the checkpoint only follows acknowledged batches."""
        total = 0
        if (await self.cursor())[0] == EPOCH:
            total = await self._publish_scan()
        docs = await self._next()
        while docs:
            reading = asyncio.ensure_future(self._next())
            try:
                await asyncio.gather(*await self._enqueue(docs))
            except BaseException:
                reading.cancel()
                raise
            self._sent(docs)
            await self._checkpoint(position(docs[-1]))
            total += len(docs)
            docs = await reading
        return total

    async def sweep(self) -> int:
        """Publish events recorded in the recent past that the relay has not sent (late commits
        or a restart with an empty memory: re-sending is harmless)."""
        cursor = await self.cursor()
        since = cursor[0] - self.sweep_window
        while self._recent and next(iter(self._recent.values())) < since:
            self._recent.popitem(last=False)
        query = {"recorded_at": {"$gte": since, "$lte": cursor[0]}}
        if await self.events.count_documents(query) == sum(
            1 for t in self._recent.values() if t >= since
        ):
            return 0
        docs = await self.events.find(
            query, {**RELAY_FIELDS, **{f: 1 for f in _ENVELOPE_FIELDS}}
        ).to_list(None)
        missing = sorted(
            (d for d in docs if d["_id"] not in self._recent and position(d) <= cursor),
            key=position,
        )
        if missing:
            await asyncio.gather(*await self._enqueue(missing))
            self._sent(missing)
            SWEPT.inc(len(missing))
            log.warning("relay.swept_late_events", count=len(missing))
        return len(missing)

    async def _enqueue(self, docs: list[dict[str, Any]]) -> list[asyncio.Future]:
        """Hand `docs` to the producer in order, as whole batches per partition (far less work
        per event than one `send` each); each aggregate keeps the partition the default
        partitioner gives its key, and a partition's batches are delivered in order."""
        futures: list[asyncio.Future] = []
        open_batches: dict[tuple[str, int], Any] = {}
        spans: dict[tuple[str, int], list[Any]] = {}
        counts: dict[str, int] = {}
        for doc in docs:
            topic, key = doc["topic"], doc["aggregate_id"].encode()
            if topic not in counts:
                counts[topic] = len(await self.producer.partitions_for(topic))
            tp = (topic, partition_for(key, counts[topic]))
            headers = [
                ("event_type", doc["event_type"].encode()),
                ("correlation_id", (doc.get("correlation_id") or "").encode()),
            ]
            span = self._producer_span(doc, tp, headers)
            value = message_value(doc)
            batch = open_batches.get(tp)
            if (
                batch is None
                or batch.append(timestamp=None, key=key, value=value, headers=headers) is None
            ):
                if batch is not None:
                    futures.append(await self._submit(batch, tp, spans.pop(tp, [])))
                batch = open_batches[tp] = self.producer.create_batch()
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    tracing.end_all([span] if span else [], ValueError("too large"))
                    raise ValueError(f"event {doc['_id']} does not fit in a producer batch")
            if span is not None:
                spans.setdefault(tp, []).append(span)
        for tp, batch in open_batches.items():
            futures.append(await self._submit(batch, tp, spans.pop(tp, [])))
        return futures

    @staticmethod
    def _producer_span(
        doc: dict[str, Any], tp: tuple[str, int], headers: list[tuple[str, bytes]]
    ) -> Any:
        """For an event appended inside a trace: a producer span, child of the stored context,
        whose context goes into `headers`."""
        parent = tracing.context_from_carrier(doc.get("trace"))
        if parent is None:
            return None
        span = tracing.tracer().start_span(
            f"{tp[0]} publish",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=tracing.messaging_attributes(
                tp[0],
                "publish",
                **{
                    "messaging.destination.partition.id": str(tp[1]),
                    "messaging.kafka.message.key": doc["aggregate_id"],
                    "messaging.message.id": doc["_id"],
                    "studyshare.event_type": doc["event_type"],
                },
            ),
        )
        headers.extend(tracing.carrier_headers(set_span_in_context(span)))
        return span

    async def _submit(
        self, batch: Any, tp: tuple[str, int], spans: list[Any] | None = None
    ) -> asyncio.Future:
        batch.close()
        future = await self.producer.send_batch(batch, tp[0], partition=tp[1])
        if spans:
            future.add_done_callback(
                lambda done: tracing.end_all(spans, None if done.cancelled() else done.exception())
            )
        return future

    def _sent(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            self._recent[doc["_id"]] = position(doc)[0]
        for (topic, event_type), count in Tally(
            (doc["topic"], doc["event_type"]) for doc in docs
        ).items():
            PUBLISHED.labels(topic, event_type).inc(count)
        log.debug("relay.published", count=len(docs))

    async def run(self) -> None:
        """Publish until stopped. A quiet relay waits for the database to report a new event
        (a change stream of the outbox), then for it to settle; where change streams are
        unavailable it polls every `idle_poll_s`."""
        watcher = asyncio.create_task(self._watch())
        try:
            while not self._stopping.is_set():
                try:
                    published = await self.drain()
                    if not published:
                        BEHIND.set(0)
                    if time.monotonic() - self._last_sweep > self.sweep_interval_s:
                        self._last_sweep = time.monotonic()
                        await self.sweep()
                except Exception:
                    log.exception("relay.batch_failed")
                    FAILURES.inc()
                    self._cursor = None  # resume from the checkpoint: re-send the batch, in order
                    published = 0
                    await self._measure_behind()
                    await asyncio.sleep(1)
                if not published:
                    await self._idle()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _measure_behind(self) -> None:
        """While publishing fails: the age of the first event after the checkpoint."""
        with contextlib.suppress(Exception):
            cursor = await self.cursor()
            oldest = await self.events.find_one(
                {"recorded_at": {"$gt": cursor[0]}}, {"recorded_at": 1}, sort=[("recorded_at", 1)]
            )
            if oldest is not None:
                BEHIND.set((datetime.now(UTC) - position(oldest)[0]).total_seconds())

    async def _idle(self) -> None:
        """Until an event appended since the last wake-up has settled, the next sweep is due,
        or the relay stops."""
        if not self._appended.is_set():
            wait = self.sweep_interval_s if self._watching else self.idle_poll_s
            woken = asyncio.ensure_future(self._appended.wait())
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({woken, stopping}, timeout=wait, return_when="FIRST_COMPLETED")
            finally:
                woken.cancel()
                stopping.cancel()
        if self._appended.is_set() and not self._stopping.is_set():
            self._appended.clear()  # appends from now on wake the relay again
            await asyncio.sleep(self.settle.total_seconds())

    async def _watch(self) -> None:
        """Set `_appended` whenever an event is inserted into the outbox (change stream);
        on failure, fall back to polling for a while and try again."""
        while not self._stopping.is_set():
            try:
                async with await self.events.watch(
                    [{"$match": {"operationType": "insert"}}, {"$project": {"_id": 1}}],
                    max_await_time_ms=int(self.sweep_interval_s * 1000),
                ) as changes:
                    self._watching = True
                    async for _ in changes:
                        self._appended.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay.change_stream_unavailable", error=str(exc))
            finally:
                self._watching = False
            await asyncio.sleep(WATCH_RETRY_S)

    def stop(self) -> None:
        self._stopping.set()


T = TypeVar("T")


async def read_ahead(source: AsyncGenerator[T, None], depth: int) -> AsyncIterator[T]:
    """The items of `source`, up to `depth` of them read ahead while the caller handles the
    current one (a database read in flight while a batch is published)."""
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(depth)

    async def pump() -> None:
        try:
            async with contextlib.aclosing(source):
                async for item in source:
                    await queue.put((True, item))
            await queue.put((False, None))
        except Exception as exc:  # handed to the reader, raised there
            await queue.put((False, exc))

    pumping = asyncio.create_task(pump())
    try:
        while True:
            more, item = await queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
