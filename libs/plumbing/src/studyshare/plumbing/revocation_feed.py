"""Keeps a `SessionRevocations` current from `identity.events`, inside an API process.

A consumer without a group reads every partition of the identity topic from the first
message the list could still keep, and then follows it; the list is rebuilt on each start. A
message's timestamp is when the relay sent it, never before the event occurred, so starting
at the broker's offsets for `now - keep_s - clock_skew_s` skips only events the list would
drop anyway: a start reads the last hour of the topic, not its whole history (see
`_seek_to_kept`). Only the session-ending events are decoded (the relay's `event_type` header
says which). "Caught up" is the first poll that brings nothing, never a comparison with end
offsets (Tansu reports them too low). When the broker cannot be reached, or the topic does
not exist yet, the API still serves; the feed logs a warning and tries again (folding an
event twice is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from studyshare.plumbing.kafka import decode, topic_partitions
from studyshare.plumbing.kafka_connection import KafkaConnection, kafka_connection
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.revocations import EVENT_TYPES, SessionRevocations

log = get_logger(__name__)

IDENTITY_TOPIC = "identity.events"


class TopicMissing(RuntimeError):
    """The identity topic does not exist (yet)."""


class RevocationFeed:
    def __init__(
        self,
        bootstrap: str | KafkaConnection,
        revocations: SessionRevocations,
        *,
        topic: str = IDENTITY_TOPIC,
        client_id: str = "studyshare-revocations",
        retry_s: float = 1.0,
        max_retry_s: float = 15.0,
        poll_ms: int = 500,
        clock_skew_s: float = 300.0,
    ) -> None:
        self.kafka = kafka_connection(bootstrap)
        self.revocations = revocations
        self.topic = topic
        self.client_id = client_id
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.poll_ms = poll_ms
        self.clock_skew_s = clock_skew_s
        self.failures = 0
        self.events_read = 0  # messages read since the last (re)start
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    @property
    def running(self) -> bool:
        return self._task is not None

    async def ready(self, wait_s: float = 2.0) -> None:
        """Readiness: a started feed has read the topic up to now (waits up to `wait_s`), so
        a new API process accepts no token of a session that already ended."""
        if self.running and not self.caught_up:
            try:
                await asyncio.wait_for(self._caught_up.wait(), wait_s)
            except TimeoutError:
                raise RuntimeError(f"session revocations not yet read from {self.topic}") from None

    def start(self) -> None:
        """Follow the topic in the background (never blocks the API's start)."""
        self._task = asyncio.create_task(
            self.run(), name="session-revocation-feed", context=contextvars.Context()
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Follow the topic for ever, starting again after any failure."""
        delay = self.retry_s
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self._caught_up.clear()
                log.warning(
                    "session_revocations.feed_unavailable",
                    topic=self.topic,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_s)
            else:
                delay = self.retry_s

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.poll_ms,
            client_id=self.client_id,
        )
        await consumer.start()
        try:
            partitions = await topic_partitions(consumer, (self.topic,))
            if not partitions:
                raise TopicMissing(f"topic {self.topic} does not exist yet")
            consumer.assign(partitions)
            await self._seek_to_kept(consumer, partitions)
            started, self.events_read = time.monotonic(), 0
            while True:
                batches = await consumer.getmany(timeout_ms=self.poll_ms)
                for messages in batches.values():
                    self.events_read += len(messages)
                    for message in messages:
                        self._fold(message.headers, message.value)
                if not batches and not self.caught_up:
                    self._caught_up.set()
                    log.info(
                        "session_revocations.caught_up",
                        events_read=self.events_read,
                        ended=len(self.revocations),
                        ms=round((time.monotonic() - started) * 1000),
                    )
        finally:
            await consumer.stop()

    async def _seek_to_kept(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        """Each partition at its first message sent since the oldest end the list keeps (less
        the clock skew allowed between hosts). A partition with no such message starts at the
        end offset asked for before the search, so a message sent meanwhile is read; an end
        offset that is too low (Tansu's) only re-reads a few. Where the broker cannot search
        by time, every partition starts at its beginning."""
        since = self.revocations.clock() - self.revocations.keep_s - self.clock_skew_s
        try:
            ends = await consumer.end_offsets(partitions)
            found = await consumer.offsets_for_times(
                {tp: max(int(since * 1000), 0) for tp in partitions}
            )
        except KafkaError as exc:
            log.warning("session_revocations.no_offsets_by_time", error=repr(exc))
            await consumer.seek_to_beginning(*partitions)
            return
        for tp in partitions:
            at = found.get(tp)
            # no message since: None from Kafka, a timestamp of -1 from Tansu
            consumer.seek(tp, at.offset if at is not None and at.timestamp >= 0 else ends[tp])

    def _fold(self, headers, value: bytes | None) -> None:
        kind = next((v for k, v in headers or () if k == "event_type"), None)
        if value is None or (kind is not None and kind.decode() not in EVENT_TYPES):
            return
        envelope = decode(value)
        if envelope is None:
            return
        if envelope.event_type in EVENT_TYPES and self.revocations.apply(envelope):
            log.debug("session_revocations.ended", event_type=envelope.event_type)
