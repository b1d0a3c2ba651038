"""A projection's state as plain data, to compare a live generation with a rebuild.

`live_state` reads the generation readers use now; `rebuilt_state` replays the projection's
topics from offset 0 into a scratch generation beside it (never switched to), reads it and drops
it. Both keep only what `Projection.comparable` says a rebuild must reproduce, so
`differences(live, rebuilt)` is empty when the live read model equals the one a fault-free
consumer would build from the same events.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.plumbing.projection import GenerationPointer, Projection, ProjectionRunner
from studyshare.plumbing.replay import replay_projection

State = dict[str, dict[str, dict[str, Any]]]


async def generation_state(db: AsyncDatabase, projection: Projection, generation: int) -> State:
    """`{collection: {str(_id): comparable document}}` of one generation (checkpoints too)."""
    prefix = f"{projection.name}.g{generation}."
    state: State = {}
    for name in sorted(await db.list_collection_names()):
        if not name.startswith(prefix):
            continue
        collection = name[len(prefix) :]
        docs: dict[str, dict[str, Any]] = {}
        async for doc in db[name].find({}):
            kept = projection.comparable(collection, doc)
            if kept is not None:
                docs[str(doc["_id"])] = kept
        state[collection] = docs
    return state


async def live_state(db: AsyncDatabase, projection: Projection) -> State:
    generation = await GenerationPointer(db, projection.name, cache_s=0).current()
    return await generation_state(db, projection, generation)


async def rebuilt_state(
    db: AsyncDatabase, projection: Projection, bootstrap: str, *, idle_s: float = 2.0
) -> State:
    """Replay from offset 0 into a scratch generation, read it, drop it; the live generation
    and its pointer are left as they are."""
    generation, _ = await replay_projection(projection, db, bootstrap, idle_s=idle_s, switch=False)
    try:
        return await generation_state(db, projection, generation)
    finally:
        await ProjectionRunner(projection, db).drop_generation(generation)


def differences(live: State, rebuilt: State, limit: int = 10) -> list[str]:
    """What differs, one line per document (at most `limit` lines)."""
    found: list[str] = []
    for collection in sorted(set(live) | set(rebuilt)):
        mine, theirs = live.get(collection, {}), rebuilt.get(collection, {})
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) == theirs.get(key):
                continue
            if key not in theirs:
                found.append(f"{collection}/{key}: only live: {mine[key]}")
            elif key not in mine:
                found.append(f"{collection}/{key}: only rebuilt: {theirs[key]}")
            else:
                fields = sorted(
                    f
                    for f in set(mine[key]) | set(theirs[key])
                    if mine[key].get(f) != theirs[key].get(f)
                )
                detail = ", ".join(
                    f"{f}: {mine[key].get(f)!r} != {theirs[key].get(f)!r}" for f in fields
                )
                found.append(f"{collection}/{key}: {detail}")
            if len(found) >= limit:
                return found
    return found
