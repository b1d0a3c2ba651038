"""Testing helpers: an event store and a unit of work in memory, for handler tests that run
without a database (as cosmicpython's do). They keep the real ones' contract: an append of a
taken version raises `ConcurrencyConflict`, and a unit of work that fails leaves nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry
from studyshare.plumbing.eventstore import ConcurrencyConflict
from studyshare.plumbing.unit_of_work import RETRIES, Retryable, Session, Work, transient

T = TypeVar("T")


class InMemoryEventStore:
    def __init__(self) -> None:
        self.streams: dict[str, list[EventEnvelope]] = {}
        self.committed: list[EventEnvelope] = []  # in append order, like the outbox

    async def load(self, aggregate_id: str, session: Session = None) -> list[EventEnvelope]:
        return [registry.upcast(e) for e in self.streams.get(aggregate_id, [])]

    async def append(self, envelopes: Sequence[EventEnvelope], session: Session = None) -> None:
        taken = {aggregate_id: len(stream) for aggregate_id, stream in self.streams.items()}
        for envelope in envelopes:  # each next version of its stream, in the batch too
            if envelope.aggregate_version != taken.get(envelope.aggregate_id, 0) + 1:
                raise ConcurrencyConflict(
                    f"{envelope.aggregate_type} {envelope.aggregate_id} changed concurrently "
                    f"(version {envelope.aggregate_version} is taken)"
                )
            taken[envelope.aggregate_id] = envelope.aggregate_version
        for envelope in envelopes:
            self.streams.setdefault(envelope.aggregate_id, []).append(envelope)
            self.committed.append(envelope)

    def unit_of_work(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)

    def events_of(self, event_type: str) -> list[EventEnvelope]:
        return [e for e in self.committed if e.event_type == event_type]


class InMemoryUnitOfWork:
    """Runs work against the in-memory store; on failure the store is as before (rollback)."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self.store = store

    async def run(
        self, work: Work[T], *, retries: int = RETRIES, retry_if: Retryable = transient
    ) -> T:
        for attempt in range(retries + 1):
            streams = {k: list(v) for k, v in self.store.streams.items()}
            committed = list(self.store.committed)
            try:
                return await work(None)
            except BaseException as exc:
                self.store.streams, self.store.committed = streams, committed
                if attempt == retries or not retry_if(exc):
                    raise
        raise AssertionError("unreachable")
