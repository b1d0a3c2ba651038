"""The study logging of every access: stored before its answer leaves, coalesced per window.

`await record(decision, principal, action)` counts the access in a tally document of the
`access_tallies` collection, one per (actor, study, action, path, window) (default window: the
calendar minute), and returns once that count is written: the answer leaves only after its
access is stored, so a crash (kill -9) loses none. Concurrent accesses share one write (group
commit: while one `bulk_write` of `$inc` upserts is in flight, the next batch gathers), so the
hot WADO routes cost a share of one database write each, not a write each. A refusal is
registered the same way, as `StudyAccessRefused` named by the rule that refused it; a download
is a tally of its own (never coalesced).

The first view, metadata or instances access of a user to a study through a bucket is also
appended at once as `StudyFirstOpened` (one per user, bucket and study: a derived id at
version 1, so a second process's append is a conflict, ignored), before `record` resolves:
the share service marks the sender's message read from it within a second, while the
accesses themselves stay batched per window (issue 16, point 12).

`flush()` (a background task, every `flush_interval_s`) turns the tallies of closed windows
into events (`StudyAccessed` with `count`, `StudyAccessRefused`, `StudyDownloaded`) in one
transaction that appends them to the events collection (the outbox, relayed to audit) and
deletes the tallies. Any process of the service flushes any closed tally, so those left by a
killed process are flushed by the next one; a normal shutdown flushes open windows too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from pymongo import UpdateOne

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import DomainEvent
from studyshare.contracts.events.study import (
    StudyAccessed,
    StudyAccessRefused,
    StudyDownloaded,
    StudyFirstOpened,
)
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.eventstore import ConcurrencyConflict, EventStore, envelope_for
from studyshare.plumbing.logging import current_correlation_id, get_logger
from studyshare.plumbing.unit_of_work import Session

log = get_logger(__name__)

RECORDED = Counter("studyshare_study_access_recorded_total", "Accesses recorded", ["action"])
REFUSED = Counter("studyshare_study_access_refused_total", "Refusals recorded", ["action"])
WRITTEN = Counter("studyshare_study_access_events_total", "Access events written", ["type"])
FIRST_OPENS = Counter("studyshare_study_first_opens_total", "StudyFirstOpened events appended")
COMMITS = Counter("studyshare_study_access_commits_total", "Group commits of access tallies")
BUFFERED = Gauge("studyshare_study_access_buffered", "Access counts waiting for their write")

TALLIES = "access_tallies"
EVENT_TYPES: dict[str, type[DomainEvent]] = {
    "StudyAccessed": StudyAccessed,
    "StudyAccessRefused": StudyAccessRefused,
    "StudyDownloaded": StudyDownloaded,
}
ACTIONS = (
    "view",
    "metadata",
    "instances",
    "rendered",
    "download",
    "forward",
    "report_read",
    "report_write",
    "search",
    "list",
)
#: the accesses that open a study (and read its message); a search or a list does not
OPENING_ACTIONS = frozenset({"view", "metadata", "instances"})
#: how many (user, study) first opens a process remembers to skip the append (then it asks the
#: event store again, which refuses a second one)
FIRST_OPENS_REMEMBERED = 100_000


@dataclass
class _Pending:
    """Counts of one tally not yet written, and what its document starts with."""

    first: dict[str, Any]
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
    """Registers accesses durably (group commit of tally counts) and turns closed tallies into
    events."""

    def __init__(
        self,
        store: EventStore,
        *,
        window_s: float = 60.0,
        flush_interval_s: float = 1.0,
        flush_batch: int = 2000,
        clock: Callable[[], float] = time.time,
        apply_local: Callable[[list[EventEnvelope]], None] | None = None,
    ) -> None:
        self.store = store
        #: folds a stored first open into this process's access model, ahead of the worker
        self.apply_local = apply_local
        self.tallies = store.db[TALLIES]
        self.window_s = window_s
        self.flush_interval_s = flush_interval_s
        self.flush_batch = flush_batch
        self.clock = clock
        self._pending: dict[str, _Pending] = {}
        self._written: asyncio.Future[None] | None = None
        self._dirty = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self._flusher: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._opened: dict[str, None] = {}  # first opens known stored (insertion-ordered)

    async def ensure_indexes(self) -> None:
        await self.tallies.create_index("window_end", name="by_window_end")

    # -- registering ----------------------------------------------------------------------

    def record(self, decision: AccessDecision, principal: AccessClaims, action: str) -> Awaitable:
        """Register one access (a refusal when the decision allows no images); await the
        result: it resolves once the access is stored."""
        if action not in ACTIONS:
            raise ValueError(f"unknown access action {action!r}")
        if not decision.images:
            return self.refused(decision, principal, action, decision.refusal or "no_grant")
        RECORDED.labels(action).inc()
        via = decision.via or "grant"
        user_id = principal.sub if principal.kind == "user" else None
        reference_id = decision.reference_id or principal.reference_id
        actor = actor_of(principal, via)
        now = self.clock()
        if action == "download":
            event: DomainEvent = StudyDownloaded(
                study_uid=decision.study_uid,
                via=via,
                user_id=user_id,
                reference_id=reference_id,
                bucket_id=decision.bucket_id,
                anonymized=decision.anonymized,
            )
            return self._count(new_id("dl"), event, actor, now, window_end=now)
        start = now - (now % self.window_s)
        key = (
            "accessed",
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
        counted = self._count(
            _tally_id(key),
            StudyAccessed(
                study_uid=decision.study_uid,
                action=action,  # type: ignore[arg-type]
                via=via,
                user_id=user_id,
                reference_id=reference_id,
                bucket_id=decision.bucket_id,
                group_id=decision.group_id,
                anonymized=decision.anonymized,
            ),
            actor,
            now,
            window_end=start + self.window_s,
        )
        if user_id is None or decision.bucket_id is None or action not in OPENING_ACTIONS:
            return counted
        opening_id = first_opening_id(user_id, decision.bucket_id, decision.study_uid)
        if opening_id in self._opened:
            return counted
        first = StudyFirstOpened(
            study_uid=decision.study_uid, user_id=user_id, bucket_id=decision.bucket_id
        )
        return self._with_first_open(counted, opening_id, first, actor)

    async def _with_first_open(
        self, counted: Awaitable, opening_id: str, event: StudyFirstOpened, actor: Actor
    ) -> None:
        """The access counted and, at the same time, the first open appended (once, whoever
        comes first). A failed append fails nothing: the window's `StudyAccessed` marks the
        message read too, only later."""
        await asyncio.gather(counted, self._append_first_open(opening_id, event, actor))

    async def _append_first_open(
        self, opening_id: str, event: StudyFirstOpened, actor: Actor
    ) -> None:
        envelope = envelope_for(
            event,
            aggregate_id=opening_id,
            aggregate_version=1,
            actor=actor,
            correlation_id=current_correlation_id(),
        )
        try:
            await self.store.append([envelope])
        except ConcurrencyConflict:
            pass  # another request or process stored it first
        except Exception:
            log.warning("access_log.first_open_failed", study_uid=event.study_uid, exc_info=True)
            return
        else:
            FIRST_OPENS.inc()
            if self.apply_local is not None:
                self.apply_local([envelope])
        if len(self._opened) >= FIRST_OPENS_REMEMBERED:
            self._opened.pop(next(iter(self._opened)))
        self._opened[opening_id] = None

    def refused(
        self, decision: AccessDecision, principal: AccessClaims, action: str, rule: str
    ) -> Awaitable:
        """Register a refused access, named by the rule that refused it."""
        if action not in ACTIONS:
            raise ValueError(f"unknown access action {action!r}")
        REFUSED.labels(action).inc()
        log.info("access.refused", study_uid=decision.study_uid, rule=rule, action=action)
        now = self.clock()
        start = now - (now % self.window_s)
        key = ("refused", principal.kind, principal.sub, decision.study_uid, action, rule, start)
        return self._count(
            _tally_id(key),
            StudyAccessRefused(
                study_uid=decision.study_uid,
                action=action,  # type: ignore[arg-type]
                rule=rule,
                user_id=principal.sub if principal.kind == "user" else None,
                reference_id=principal.reference_id,
            ),
            actor_of(principal),
            now,
            window_end=start + self.window_s,
        )

    def _count(
        self, tally_id: str, event: DomainEvent, actor: Actor, now: float, *, window_end: float
    ) -> Awaitable:
        pending = self._pending.get(tally_id)
        if pending is None:
            self._pending[tally_id] = _Pending(
                {
                    "aggregate_id": new_id("acc"),
                    "event_type": event.event_type,
                    "payload": event.model_dump(mode="json"),
                    "actor": actor.model_dump(mode="json"),
                    "correlation_id": current_correlation_id(),
                    "first_at": datetime.fromtimestamp(now, UTC),
                    "window_end": window_end,
                }
            )
        else:
            pending.count += 1
        BUFFERED.set(len(self._pending))
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="access-log-writer")
        self._dirty.set()
        # one shared future per batch: a cancelled request must not cancel the others' wait
        return asyncio.shield(self._written)

    async def _write_loop(self) -> None:
        """Group commit: one `bulk_write` at a time; what arrives meanwhile is the next batch."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            batch, written = self._pending, self._written
            self._pending, self._written = {}, None
            if written is None:
                continue
            try:
                await self.tallies.bulk_write(
                    [
                        UpdateOne(
                            {"_id": tally_id},
                            {"$inc": {"count": p.count}, "$setOnInsert": p.first},
                            upsert=True,
                        )
                        for tally_id, p in batch.items()
                    ],
                    ordered=False,
                )
            except Exception as exc:  # the requests waiting on it fail: nothing unlogged leaves
                log.exception("access_log.write_failed", tallies=len(batch))
                written.set_exception(exc)
                written.exception()  # retrieved: the waiters raise it themselves
            else:
                COMMITS.inc()
                written.set_result(None)
            BUFFERED.set(len(self._pending))

    # -- turning closed tallies into events ----------------------------------------------

    async def flush(self, everything: bool = False) -> int:
        """Append the events of the closed tallies (everything: open windows too), deleting the
        tallies in the same transaction; how many events."""
        async with self._lock:
            query: dict[str, Any] = {} if everything else {"window_end": {"$lte": self.clock()}}
            written = 0
            uow = self.store.unit_of_work()

            async def turn(session: Session) -> tuple[int, list[EventEnvelope]]:
                docs = (
                    await self.tallies.find(query, session=session)
                    .limit(self.flush_batch)
                    .to_list(None)
                )
                envelopes = [_envelope(doc) for doc in docs]
                if docs:
                    await self.tallies.delete_many(
                        {"_id": {"$in": [d["_id"] for d in docs]}}, session=session
                    )
                    await self.store.append(envelopes, session=session)
                return len(docs), envelopes

            while True:
                taken, envelopes = await uow.run(turn)
                for envelope in envelopes:
                    WRITTEN.labels(envelope.event_type).inc()
                written += len(envelopes)
                if taken < self.flush_batch:
                    return written

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("access_log.flush_failed")

    def start(self) -> None:
        self._flusher = asyncio.create_task(self.run(), name="access-log-flush")

    async def close(self) -> None:
        """Stop the flusher, write what waits, and flush everything, open windows included."""
        for task in (self._flusher,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._flusher = None
        if self._written is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._written)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        written = await self.flush(everything=True)
        log.info("access_log.closed", written=written)

    @property
    def buffered(self) -> int:
        """Access counts not yet written (their requests are still waiting)."""
        return len(self._pending)


def first_opening_id(user_id: str, bucket_id: str, study_uid: str) -> str:
    """The `StudyOpening` aggregate of a user, a bucket and a study (a later share, with a
    message of its own, is opened for the first time again)."""
    key = f"{user_id}|{bucket_id}|{study_uid}"
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"opn_{digest}"


def _tally_id(key: tuple) -> str:
    return hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()


def _envelope(doc: dict[str, Any]) -> EventEnvelope:
    cls = EVENT_TYPES[doc["event_type"]]
    payload = dict(doc["payload"])
    if "count" in cls.model_fields:
        payload["count"] = int(doc["count"])
    first_at = doc["first_at"]
    return envelope_for(
        cls.model_validate(payload),
        aggregate_id=doc["aggregate_id"],
        aggregate_version=1,
        actor=Actor.model_validate(doc["actor"]),
        correlation_id=doc.get("correlation_id"),
        occurred_at=first_at if first_at.tzinfo else first_at.replace(tzinfo=UTC),
    )
