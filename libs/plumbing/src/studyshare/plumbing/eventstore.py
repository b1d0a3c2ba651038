"""Event store on MongoDB with optimistic concurrency; its collection doubles as the outbox.

A stream is the events of one aggregate, keyed by `(aggregate_id, aggregate_version)` under a
unique index: two writers appending the same version cannot both win. Every stored event has a
`recorded_at` (milliseconds, never earlier than the aggregate's previous event); the outbox relay
follows that order with a checkpoint instead of writing a flag per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import DomainEvent, registry
from studyshare.contracts.topics import topic_for_aggregate
from studyshare.plumbing.errors import Conflict
from studyshare.plumbing.logging import current_correlation_id
from studyshare.plumbing.tracing import current_carrier

if TYPE_CHECKING:
    from studyshare.plumbing.unit_of_work import MongoUnitOfWork

EVENTS_COLLECTION = "events"


class ConcurrencyConflict(Conflict):
    """Someone else appended to this aggregate first; reload and try again."""


def envelope_for(
    event: DomainEvent,
    *,
    aggregate_id: str,
    aggregate_version: int,
    actor: Actor,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> EventEnvelope:
    """Wrap a payload; the correlation id defaults to the one of the work in progress."""
    return EventEnvelope(
        event_type=event.event_type,
        schema_version=event.schema_version,
        aggregate_type=event.aggregate_type,
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        occurred_at=occurred_at or datetime.now(UTC),
        actor=actor,
        correlation_id=correlation_id or current_correlation_id(),
        causation_id=causation_id,
        payload=event.model_dump(mode="json"),
    )


def to_document(
    envelope: EventEnvelope, recorded_at: datetime, trace: dict[str, str] | None = None
) -> dict[str, Any]:
    """The stored form: queryable fields plus `wire`, the exact bytes the relay publishes, and
    `trace`, the W3C trace context of the work that appended it (`plumbing.tracing`; the relay
    continues that trace in the message headers)."""
    doc = envelope.model_dump(mode="python")
    doc["_id"] = str(doc.pop("event_id"))
    doc["topic"] = topic_for_aggregate(envelope.aggregate_type)
    doc["recorded_at"] = recorded_at
    doc["wire"] = envelope.to_json_bytes()
    if trace:
        doc["trace"] = trace
    return doc


def from_document(doc: dict[str, Any]) -> EventEnvelope:
    data = {
        k: v
        for k, v in doc.items()
        if k not in {"_id", "topic", "recorded_at", "published", "published_at", "wire", "trace"}
    }
    data["event_id"] = doc["_id"]
    return registry.upcast(EventEnvelope.model_validate(data))


class EventStore:
    def __init__(self, db: AsyncDatabase, collection: str = EVENTS_COLLECTION) -> None:
        self.db = db
        self.events = db[collection]

    def unit_of_work(self) -> MongoUnitOfWork:
        """Commands on this store run in transactions of its database's client."""
        from studyshare.plumbing.unit_of_work import MongoUnitOfWork

        return MongoUnitOfWork(self.db.client)

    async def ensure_indexes(self) -> None:
        await self.events.create_index(
            [("aggregate_id", ASCENDING), ("aggregate_version", ASCENDING)],
            unique=True,
            name="stream",
        )
        await self.events.create_index([("recorded_at", ASCENDING)], name="outbox")

    async def load(
        self, aggregate_id: str, session: AsyncClientSession | None = None
    ) -> list[EventEnvelope]:
        cursor = self.events.find({"aggregate_id": aggregate_id}, session=session).sort(
            "aggregate_version", ASCENDING
        )
        return [from_document(doc) async for doc in cursor]

    async def load_as_published(self, aggregate_id: str) -> list[EventEnvelope]:
        """The stream as the relay publishes it (the stored `wire` bytes, not upcast)."""
        cursor = self.events.find({"aggregate_id": aggregate_id}, {"wire": 1}).sort(
            "aggregate_version", ASCENDING
        )
        return [EventEnvelope.from_json_bytes(doc["wire"]) async for doc in cursor]

    async def append(
        self, envelopes: Sequence[EventEnvelope], session: AsyncClientSession | None = None
    ) -> None:
        """Store new events atomically per call; raise ConcurrencyConflict if a version is taken."""
        if not envelopes:
            return
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        trace = current_carrier()
        docs = [to_document(e, max(now, e.occurred_at), trace) for e in envelopes]
        try:
            if len(docs) == 1:
                await self.events.insert_one(docs[0], session=session)
            else:
                await self.events.insert_many(docs, ordered=True, session=session)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if isinstance(exc, BulkWriteError) and not all(
                e.get("code") == 11000 for e in exc.details.get("writeErrors", [])
            ):
                raise
            first = envelopes[0]
            raise ConcurrencyConflict(
                f"{first.aggregate_type} {first.aggregate_id} changed concurrently "
                f"(version {first.aggregate_version} is taken)"
            ) from exc

    async def all_events(self, **filters: Any) -> list[EventEnvelope]:
        cursor = self.events.find(filters).sort(
            [("recorded_at", 1), ("aggregate_id", 1), ("aggregate_version", 1)]
        )
        return [from_document(doc) async for doc in cursor]
