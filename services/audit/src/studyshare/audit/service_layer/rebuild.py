"""Rebuild the study log from a list of envelopes (benchmarks, tests, offline recovery).

The same code path as the worker and the Kafka replay: `ProjectionRunner.apply_batch`, one
transaction per batch, into a fresh generation; the pointer switches only when asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.audit.adapters.projections import AuditLogProjection
from studyshare.contracts.envelope import EventEnvelope
from studyshare.plumbing.projection import ProjectionRunner


async def rebuild_from_envelopes(
    db: AsyncDatabase,
    envelopes: Sequence[EventEnvelope],
    *,
    batch_size: int = 5000,
    switch: bool = False,
    build_indexes: bool = True,
) -> tuple[int, int]:
    """Apply `envelopes` (in order) to a new generation, then build its indexes; return
    (generation, events applied).

    The load itself is one transaction per `batch_size` events, with the same documents a raw
    bulk insert would write plus the checkpoints; `build_indexes=False` measures the load
    alone (the indexes are then built when the generation goes live)."""
    runner = ProjectionRunner(AuditLogProjection(), db)
    generation = await runner.pointer.current() + 1
    await runner.drop_generation(generation)
    applied = 0
    for start in range(0, len(envelopes), batch_size):
        applied += await runner.apply_batch(
            envelopes[start : start + batch_size], generation=generation
        )
    if build_indexes or switch:  # a live generation always has its indexes
        await runner.prepare_live(generation)
    if switch:
        await runner.pointer.switch(generation)
    return generation, applied
