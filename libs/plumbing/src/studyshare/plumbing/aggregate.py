"""The load-decide-append cycle of aggregates (`domain.Aggregate`) over the event store.

The domain stays pure: an aggregate's command methods return new payloads and never touch
storage. `Repository.execute` loads the stream, asks the aggregate, appends with optimistic
concurrency and writes the aggregate's view, all in one unit of work: retried whole from a
fresh load when another writer won.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import DomainEvent, registry
from studyshare.plumbing.domain import Aggregate
from studyshare.plumbing.errors import NotFound
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.unit_of_work import RETRIES, Session, UnitOfWork

A = TypeVar("A", bound=Aggregate)
Decision = Callable[[A], Sequence[DomainEvent]]
#: a read model that follows an aggregate: written with its events, in their transaction
View = Callable[[A, list[EventEnvelope], Session], Awaitable[None]]


class Events(Protocol):
    """What a repository needs of an event store (`EventStore`, or the in-memory fake)."""

    async def load(self, aggregate_id: str, session: Session = None) -> list[EventEnvelope]: ...

    async def append(self, envelopes: Sequence[EventEnvelope], session: Session = None) -> None: ...

    def unit_of_work(self) -> UnitOfWork: ...


class Repository(Generic[A]):
    """Loads one kind of aggregate from the event store and appends what it decides, with
    its view (if any) in the same transaction."""

    def __init__(self, store: Events, cls: type[A], view: View[A] | None = None) -> None:
        self.store = store
        self.cls = cls
        self.view = view
        self.uow = store.unit_of_work()

    async def get(self, aggregate_id: str, session: Session = None) -> A:
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
        retries: int = RETRIES,
        session: Session = None,
        loaded: A | None = None,
    ) -> tuple[A, list[EventEnvelope]]:
        """Load, decide, append and write the view in a unit of work of its own, or, given
        the `session` of a caller's unit of work, in that one (whose retry then reruns the
        caller's whole work). `loaded`, the aggregate as the caller just read it, spares the
        first load (not to be decided on again: it is changed in place on success)."""
        first = [loaded] if loaded is not None else []

        async def attempt(session: Session) -> tuple[A, list[EventEnvelope]]:
            aggregate = first.pop() if first else await self.get(aggregate_id, session)
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
            await self.store.append(envelopes, session=session)
            for event in events:
                aggregate.apply(event)
            if self.view is not None and envelopes:
                await self.view(aggregate, envelopes, session)
            return aggregate, envelopes

        if session is not None:
            return await attempt(session)
        return await self.uow.run(attempt, retries=retries)


def fold(envelopes: Sequence[EventEnvelope], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Typed payloads by event id, handy in tests and read models."""
    result = into if into is not None else {}
    for envelope in envelopes:
        result[str(envelope.event_id)] = registry.payload(envelope)
    return result
