"""The study logging of every access, coalesced so the WADO hot path costs no database write.

`record(decision, principal, action)` only counts in memory: one `StudyAccessed` event per
(actor, study, action, path) and coalescing window (default: the calendar minute), with
`count` = how many accesses it stands for. A background task writes the windows that closed
with one `insert_many` every `flush_interval_s`; downloads are never coalesced: each is its own
`StudyDownloaded`, written at the next flush (woken at once). The events go to the service's
events collection (the outbox) and reach audit through the relay like every other event.

Durability: a crash (kill -9) loses at most the accesses of the open window (<= one minute by
default, `access_log_window_s`) plus the downloads of the last `flush_interval_s`; a normal
shutdown flushes everything, open windows included (`close()`, called by the API lifespan).
A failed write is retried at the next flush: nothing is dropped while the process lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events.study import StudyAccessed, StudyDownloaded
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.aggregate import new_id
from studyshare.plumbing.eventstore import EventStore, envelope_for
from studyshare.plumbing.logging import current_correlation_id, get_logger
from studyshare.study_store.domain.access import AccessDecision

log = get_logger(__name__)

RECORDED = Counter("studyshare_study_access_recorded_total", "Accesses recorded", ["action"])
WRITTEN = Counter("studyshare_study_access_events_total", "Access events written", ["type"])
BUFFERED = Gauge("studyshare_study_access_buffered", "Coalesced access records not yet written")

ACTIONS = (
    "view",
    "metadata",
    "instances",
    "rendered",
    "download",
    "forward",
    "report_read",
    "report_write",
)


@dataclass
class _Tally:
    window_start: float
    window_end: float
    first_at: datetime
    event: StudyAccessed
    actor: Actor
    correlation_id: str
    count: int = 1


def actor_of(principal: AccessClaims, via: str | None = None) -> Actor:
    role = via if via in ("service_desk", "break_the_glass") else None
    if role is None and principal.roles:
        role = principal.roles[0]
    return Actor(
        kind=principal.kind if principal.kind != "service" else "service",
        id=principal.sub,
        role=role,
    )


class AccessLog:
    """Coalesces access registrations and writes them in batches."""

    def __init__(
        self,
        store: EventStore,
        *,
        window_s: float = 60.0,
        flush_interval_s: float = 1.0,
        max_buffered: int = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.window_s = window_s
        self.flush_interval_s = flush_interval_s
        self.max_buffered = max_buffered
        self.clock = clock
        self._tallies: dict[tuple, _Tally] = {}
        self._ready: list[EventEnvelope] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._retrying = False

    def record(self, decision: AccessDecision, principal: AccessClaims, action: str):
        """Register one access (never blocks, never touches the database).

        Returns an already finished future, so `await access_log.record(...)` works too."""
        if action not in ACTIONS:
            raise ValueError(f"unknown access action {action!r}")
        if not decision.images:
            # A refusal is not an access; it must never read as one in the study logging.
            log.info("access.refused", study_uid=decision.study_uid, refusal=decision.refusal)
            return _done()
        RECORDED.labels(action).inc()
        via = decision.via or "grant"
        user_id = principal.sub if principal.kind == "user" else None
        reference_number = decision.reference_number or principal.reference_number
        now = self.clock()
        if action == "download":
            self._ready.append(
                envelope_for(
                    StudyDownloaded(
                        study_uid=decision.study_uid,
                        via=via,
                        user_id=user_id,
                        reference_number=reference_number,
                        bucket_id=decision.bucket_id,
                        anonymized=decision.anonymized,
                    ),
                    aggregate_id=new_id("acc"),
                    aggregate_version=1,
                    actor=actor_of(principal, via),
                    occurred_at=datetime.fromtimestamp(now, UTC),
                )
            )
            self._wake.set()
        else:
            start = now - (now % self.window_s)
            key = (
                principal.kind,
                principal.sub,
                decision.study_uid,
                action,
                via,
                decision.bucket_id,
                decision.group_id,
                decision.anonymized,
                start,
            )
            tally = self._tallies.get(key)
            if tally is None:
                self._tallies[key] = _Tally(
                    window_start=start,
                    window_end=start + self.window_s,
                    first_at=datetime.fromtimestamp(now, UTC),
                    event=StudyAccessed(
                        study_uid=decision.study_uid,
                        action=action,
                        via=via,
                        user_id=user_id,
                        reference_number=reference_number,
                        bucket_id=decision.bucket_id,
                        group_id=decision.group_id,
                        anonymized=decision.anonymized,
                    ),
                    actor=actor_of(principal, via),
                    correlation_id=current_correlation_id(),
                )
            else:
                tally.count += 1
            if len(self._tallies) >= self.max_buffered:
                self._wake.set()
        BUFFERED.set(len(self._tallies) + len(self._ready))
        return _done()

    def _take(self, everything: bool) -> list[EventEnvelope]:
        now = self.clock()
        crowded = len(self._tallies) >= self.max_buffered
        closing = [
            k for k, t in self._tallies.items() if everything or crowded or t.window_end <= now
        ]
        batch = self._ready
        self._ready = []
        for key in closing:
            t = self._tallies.pop(key)
            batch.append(
                envelope_for(
                    t.event.model_copy(update={"count": t.count}),
                    aggregate_id=new_id("acc"),
                    aggregate_version=1,
                    actor=t.actor,
                    correlation_id=t.correlation_id,
                    occurred_at=t.first_at,
                )
            )
        return batch

    async def flush(self, everything: bool = False) -> int:
        """Write what is due (everything: open windows too); return how many events."""
        async with self._lock:
            batch = self._take(everything)
            if not batch:
                return 0
            if self._retrying:
                # A failed insert_many may have stored a prefix of the batch: skip it.
                ids = [str(e.event_id) for e in batch]
                stored = {d["_id"] async for d in self.store.events.find({"_id": {"$in": ids}})}
                batch = [e for e in batch if str(e.event_id) not in stored]
            try:
                await self.store.append(batch)
            except Exception:
                self._ready = batch + self._ready  # retried at the next flush
                self._retrying = True
                raise
            self._retrying = False
            for envelope in batch:
                WRITTEN.labels(envelope.event_type).inc()
            BUFFERED.set(len(self._tallies) + len(self._ready))
            return len(batch)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("access_log.flush_failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="access-log-flush")

    async def close(self) -> None:
        """Stop the flusher and write everything, open windows included."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        written = await self.flush(everything=True)
        log.info("access_log.closed", written=written)

    @property
    def buffered(self) -> int:
        return len(self._tallies) + len(self._ready)


def _done() -> asyncio.Future | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    future = loop.create_future()
    future.set_result(None)
    return future
