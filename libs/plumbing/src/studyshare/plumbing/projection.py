"""Projections: read models fed by events, applied once each, rebuildable from offset 0.

A projection owns a few collections. They live in a *generation* (`<name>.g<N>.<collection>`);
the pointer to the live generation is one document in `projection_generations`, so a replay can
build generation N+1 beside the live one and switch readers and writers over in one write.

Every batch is applied in one MongoDB transaction together with the projection's checkpoints:
the last aggregate version applied per aggregate. A redelivered event (relay retry, consumer
restart) has a version at or below the checkpoint and is skipped, so each effect happens once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from prometheus_client import Counter
from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import EventEnvelope
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.mongo import find_in
from studyshare.plumbing.unit_of_work import MongoUnitOfWork, Session

log = get_logger(__name__)

GENERATIONS = "projection_generations"
CHECKPOINTS = "_checkpoints"
APPLIED = Counter("studyshare_projection_events_total", "Events applied", ["projection", "outcome"])


@dataclass
class ProjectionContext:
    db: AsyncDatabase
    projection: str
    generation: int
    session: AsyncClientSession | None = None

    def collection(self, name: str) -> AsyncCollection:
        return self.db[collection_name(self.projection, self.generation, name)]


def collection_name(projection: str, generation: int, name: str) -> str:
    return f"{projection}.g{generation}.{name}"


class Projection(ABC):
    """Subclass per read model: name it, list its topics and collections, apply events."""

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]
    collections: ClassVar[tuple[str, ...]] = ()
    transactional: ClassVar[bool] = True

    async def setup(self, ctx: ProjectionContext) -> None:  # noqa: B027 - optional hook
        """Create indexes of the projection's collections in this generation."""

    @abstractmethod
    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        """Apply new (never before applied) events, in order, using `ctx.session`."""

    async def prepare_live(self, ctx: ProjectionContext) -> None:
        """Make a rebuilt generation ready for readers before it goes live (its indexes);
        by default what `setup` creates."""
        await self.setup(ctx)

    def comparable(self, collection: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """The part of a stored document that a rebuild from offset 0 must reproduce exactly;
        `None` leaves the document out. Override to drop what depends on delivery order,
        batching or the clock (sequence numbers, recording times)."""
        return doc


class GenerationPointer:
    """Reads (with a short cache) and switches a projection's live generation."""

    def __init__(self, db: AsyncDatabase, projection: str, cache_s: float = 1.0) -> None:
        self.db = db
        self.projection = projection
        self.cache_s = cache_s
        self._cached: tuple[float, int] | None = None

    async def current(self) -> int:
        now = time.monotonic()
        if self._cached and now - self._cached[0] < self.cache_s:
            return self._cached[1]
        doc = await self.db[GENERATIONS].find_one({"_id": self.projection})
        generation = doc["generation"] if doc else 0
        self._cached = (now, generation)
        return generation

    async def switch(self, generation: int) -> None:
        await self.db[GENERATIONS].update_one(
            {"_id": self.projection}, {"$set": {"generation": generation}}, upsert=True
        )
        self._cached = None

    async def collection(self, name: str) -> AsyncCollection:
        return self.db[collection_name(self.projection, await self.current(), name)]


class ProjectionRunner:
    """Applies batches of envelopes to one projection exactly once per event."""

    def __init__(self, projection: Projection, db: AsyncDatabase) -> None:
        self.projection = projection
        self.db = db
        self.pointer = GenerationPointer(db, projection.name)
        self._ready: set[int] = set()

    async def _context(self, generation: int | None) -> ProjectionContext:
        gen = await self.pointer.current() if generation is None else generation
        ctx = ProjectionContext(self.db, self.projection.name, gen)
        if gen not in self._ready:
            await self.projection.setup(ctx)
            self._ready.add(gen)
        return ctx

    async def apply_batch(
        self, envelopes: Sequence[EventEnvelope], generation: int | None = None
    ) -> int:
        """Apply the batch; return how many events were new."""
        if not envelopes:
            return 0
        ctx = await self._context(generation)
        if not self.projection.transactional:
            return await self._apply(envelopes, ctx)

        async def work(session: Session) -> int:
            ctx.session = session
            return await self._apply(envelopes, ctx)

        return await MongoUnitOfWork(self.db.client).run(work)

    async def _apply(self, envelopes: Sequence[EventEnvelope], ctx: ProjectionContext) -> int:
        checkpoints = ctx.collection(CHECKPOINTS)
        ids = list({e.aggregate_id for e in envelopes})
        last = {
            doc["_id"]: doc["v"]
            async for doc in find_in(checkpoints, "_id", ids, session=ctx.session)
        }
        seen = dict(last)
        fresh: list[EventEnvelope] = []
        for envelope in envelopes:
            applied = seen.get(envelope.aggregate_id, 0)
            if envelope.aggregate_version <= applied:
                continue
            if envelope.aggregate_version > applied + 1 and envelope.aggregate_id in seen:
                log.warning(
                    "projection.version_gap",
                    projection=self.projection.name,
                    aggregate_id=envelope.aggregate_id,
                    expected=applied + 1,
                    got=envelope.aggregate_version,
                )
            seen[envelope.aggregate_id] = envelope.aggregate_version
            fresh.append(envelope)
        APPLIED.labels(self.projection.name, "duplicate").inc(len(envelopes) - len(fresh))
        if not fresh:
            return 0
        await self.projection.apply(fresh, ctx)
        new = [
            {"_id": aggregate_id, "v": version}
            for aggregate_id, version in seen.items()
            if aggregate_id not in last
        ]
        if new:  # first event of these aggregates: plain inserts, cheaper than upserts
            await checkpoints.insert_many(new, ordered=False, session=ctx.session)
        moved = [
            UpdateOne({"_id": aggregate_id}, {"$set": {"v": version}})
            for aggregate_id, version in seen.items()
            if aggregate_id in last and last[aggregate_id] != version
        ]
        if moved:
            await checkpoints.bulk_write(moved, ordered=False, session=ctx.session)
        APPLIED.labels(self.projection.name, "applied").inc(len(fresh))
        for envelope in fresh:
            structlog.contextvars.bind_contextvars(correlation_id=envelope.correlation_id)
            log.info(
                "event.applied",
                projection=self.projection.name,
                event_type=envelope.event_type,
                event_id=str(envelope.event_id),
                aggregate_id=envelope.aggregate_id,
                aggregate_version=envelope.aggregate_version,
            )
        structlog.contextvars.unbind_contextvars("correlation_id")
        return len(fresh)

    async def prepare_live(self, generation: int) -> None:
        """Build what `generation` needs before readers are switched to it."""
        ctx = ProjectionContext(self.db, self.projection.name, generation)
        await self.projection.prepare_live(ctx)

    async def drop_generation(self, generation: int) -> None:
        prefix = f"{self.projection.name}.g{generation}."
        for name in await self.db.list_collection_names():
            if name.startswith(prefix):
                await self.db.drop_collection(name)
        self._ready.discard(generation)
