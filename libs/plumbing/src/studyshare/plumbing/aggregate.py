"""The load-decide-append cycle of aggregates (`domain.Aggregate`) over the event store.

The domain stays pure: an aggregate's command methods return new payloads and never touch
storage; `execute` loads the stream, asks the aggregate, and appends with optimistic concurrency,
retrying from a fresh load when another writer won.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import DomainEvent, registry
from studyshare.plumbing.domain import Aggregate
from studyshare.plumbing.errors import NotFound
from studyshare.plumbing.eventstore import ConcurrencyConflict, EventStore, envelope_for

A = TypeVar("A", bound=Aggregate)
Decision = Callable[[A], Sequence[DomainEvent]]


class Repository(Generic[A]):
    """Loads one kind of aggregate from the event store and appends what it decides."""

    def __init__(self, store: EventStore, cls: type[A]) -> None:
        self.store = store
        self.cls = cls

    async def get(self, aggregate_id: str, session: AsyncClientSession | None = None) -> A:
        return self.cls.rehydrate(aggregate_id, await self.store.load(aggregate_id, session))

    async def get_existing(self, aggregate_id: str) -> A:
        aggregate = await self.get(aggregate_id)
        if not aggregate.exists:
            raise NotFound(f"{self.cls.aggregate_type} {aggregate_id} does not exist")
        return aggregate

    async def execute(
        self,
        aggregate_id: str,
        decide: Decision[A],
        actor: Actor,
        *,
        causation_id: str | None = None,
        retries: int = 5,
        session: AsyncClientSession | None = None,
        loaded: A | None = None,
    ) -> tuple[A, list[EventEnvelope]]:
        """Load, decide, append; on a concurrent write reload and decide again. `loaded`, the
        aggregate as the caller just read it, spares the first load (not to be decided on
        again: it is changed in place when the append succeeds)."""
        for attempt in range(retries + 1):
            if attempt == 0 and loaded is not None:
                aggregate = loaded
            else:
                aggregate = await self.get(aggregate_id, session)
            events = list(decide(aggregate))
            envelopes = [
                envelope_for(
                    event,
                    aggregate_id=aggregate_id,
                    aggregate_version=aggregate.version + i + 1,
                    actor=actor,
                    causation_id=causation_id,
                )
                for i, event in enumerate(events)
            ]
            try:
                await self.store.append(envelopes, session=session)
            except ConcurrencyConflict:
                if attempt == retries or session is not None:
                    raise
                continue
            for event in events:
                aggregate.apply(event)
            return aggregate, envelopes
        raise AssertionError("unreachable")


def fold(envelopes: Sequence[EventEnvelope], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Typed payloads by event id, handy in tests and read models."""
    result = into if into is not None else {}
    for envelope in envelopes:
        result[str(envelope.event_id)] = registry.payload(envelope)
    return result
