"""The access barrier: a revocation or lock is decided on by every API process before the
command that made it answers.

The share service hands over the whole event stream of each bucket it just revoked or locked
(`POST /internal/access/barrier`, right after its commit, before its answer). The barrier
folds them into the access read model itself, through the worker's own projection and
transaction (`AccessDecisions`, checkpoints per aggregate): events the worker already applied
are skipped, and the worker skips these when they reach it through Kafka, so the read model is
the one a rebuild from offset 0 makes. Then it waits until every API process of the study
store (`access_followers`, see `plumbing.followers`) has read the model up to the sequence
number those writes got, or has certainly stopped deciding. Nothing waits for the outbox
relay, the broker or the worker.

Only whole streams of aggregates the caller owns (per the topic table) are taken: a service
cannot write another's facts, nor skip a version.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.topics import TOPIC_BY_NAME, topic_for_aggregate
from studyshare.plumbing.followers import BarrierOutcome, FollowerRegistry
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.projection import GenerationPointer, ProjectionRunner, collection_name
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.adapters.read_models import ACCESS_PROJECTION
from studyshare.study_store.domain.exceptions import BarrierEventsRefused

log = get_logger(__name__)

ACCESS_FOLLOWERS = "access_followers"
APPLY_ATTEMPTS = 8


def check_streams(caller: str, envelopes: Sequence[EventEnvelope]) -> None:
    """Each aggregate's events are its versions 1..n in order, of a type `caller` owns."""
    versions: dict[str, list[int]] = defaultdict(list)
    for envelope in envelopes:
        try:
            owner = TOPIC_BY_NAME[topic_for_aggregate(envelope.aggregate_type)].owner
        except LookupError:
            owner = None
        if owner != caller:
            raise BarrierEventsRefused(
                f"{caller} does not own {envelope.aggregate_type} {envelope.aggregate_id}"
            )
        versions[envelope.aggregate_id].append(envelope.aggregate_version)
    for aggregate_id, seen in versions.items():
        if seen != list(range(1, len(seen) + 1)):
            raise BarrierEventsRefused(f"the stream of {aggregate_id} is not whole and in order")


class AccessBarrier:
    def __init__(
        self,
        db: AsyncDatabase,
        model: AccessModel,
        registry: FollowerRegistry,
        runner: ProjectionRunner,
        *,
        max_wait_s: float,
    ) -> None:
        """`runner` applies the worker's access projection (`AccessDecisions`)."""
        self.db = db
        self.model = model
        self.registry = registry
        self.max_wait_s = max_wait_s
        self.runner = runner
        self.pointer = GenerationPointer(db, ACCESS_PROJECTION, cache_s=0)

    async def apply_and_wait(
        self, caller: str, envelopes: Sequence[EventEnvelope], timeout_s: float
    ) -> BarrierOutcome:
        """Fold the streams into the read model, then wait for every follower."""
        check_streams(caller, envelopes)
        generation, seq = await self._apply(list(envelopes))
        self.model.nudge()
        outcome = await self.registry.wait_for(
            seq, generation=generation, timeout_s=min(timeout_s, self.max_wait_s)
        )
        line = log.info if outcome.confirmed else log.warning
        line(
            "access_barrier.confirmed" if outcome.confirmed else "access_barrier.not_confirmed",
            caller=caller,
            events=len(envelopes),
            generation=generation,
            seq=seq,
            followers=outcome.followers,
            behind=outcome.behind,
            ms=round(outcome.waited_s * 1000, 1),
        )
        return outcome

    async def _apply(self, envelopes: list[EventEnvelope]) -> tuple[int, int]:
        """Apply in the live generation (a write conflict with the worker is tried again);
        the generation and the read model's sequence number once the writes committed."""
        delay = 0.01
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            generation = await self.pointer.current()
            try:
                await self.runner.apply_batch(envelopes, generation=generation)
                break
            except PyMongoError as exc:
                if attempt == APPLY_ATTEMPTS:
                    raise
                log.info("access_barrier.retry", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay *= 2
        meta = self.db[collection_name(ACCESS_PROJECTION, generation, "meta")]
        counter = await meta.find_one({"_id": "seq"})
        return generation, int(counter["value"]) if counter else 0
