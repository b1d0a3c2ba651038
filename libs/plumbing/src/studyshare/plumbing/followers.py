"""Followers, their leases, and the barrier that waits until every follower has caught up.

A *follower* is a process that keeps a copy of some state in memory and answers requests from
it: the study store's access model (every API process of the study store), the list of ended
sessions (every API process but identity's). Its copy is always somewhat behind the state it
follows, so a command that narrows access (a revocation, a lock, a logout) waits, before it
answers, until no follower can still answer on the older state:

- each follower records in a registry (a collection of the database of the service that owns
  the state) how far it has read: a `position` within a `generation` (a rebuilt read model
  starts a new generation). A `beat` writes it; each beat also counts `beats` up.
- each follower holds a `Lease`: it answers only while its last stored beat started less than
  `lease_s` ago (its own monotonic clock), and refuses (503) after that. It beats at least a
  few times per lease while it can reach the registry.
- the barrier (`FollowerRegistry.wait_for`) waits until every registered follower has read up
  to the target position, or has certainly stopped answering: its beat counter has not moved
  for its `lease_s` since the barrier first saw it (measured on the barrier's own monotonic
  clock, so no clocks are compared), or its last beat is older than `lease_s + clock_skew_s` by
  the wall clock (a follower long gone; hosts' clocks within `clock_skew_s`).

A new follower writes a beat *before* it loads the state (position -1): a barrier that reads
the registry after the target was stored either sees it (and waits for it) or the follower's
load started after the target was stored, and has it. A follower that stops leaves the
registry (`leave`), so barriers do not wait for its lease.

The bound: once `wait_for` returns True, the next request to any follower is answered on a
state that includes the target position, or refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

#: a follower's position before it has loaded anything
JOINING = -1


@dataclass
class Lease:
    """A follower's promise to answer only while its last stored beat is recent enough.

    `renew(started_at)` after a beat is stored, with the clock reading taken *before* the beat
    was sent: the lease runs from then, so it ends no later than a barrier can tell.
    """

    duration_s: float
    clock: Callable[[], float] = time.monotonic
    renewed_from: float | None = None

    def renew(self, started_at: float) -> None:
        if self.renewed_from is None or started_at > self.renewed_from:
            self.renewed_from = started_at

    def lapse(self) -> None:
        """Stop answering now (the follower is stopping, or its registry entry is gone)."""
        self.renewed_from = None

    @property
    def fresh(self) -> bool:
        return self.renewed_from is not None and self.clock() - self.renewed_from < self.duration_s

    @property
    def age_s(self) -> float | None:
        """Seconds since the beat that renewed the lease started (None: never renewed)."""
        return None if self.renewed_from is None else self.clock() - self.renewed_from


@dataclass
class Seen:
    """What a barrier saw of one follower first, to tell when its lease has lapsed."""

    beats: int
    at: float


@dataclass
class BarrierOutcome:
    """How a barrier ended: `confirmed` when every follower has the target (or lapsed)."""

    confirmed: bool
    waited_s: float
    followers: int
    behind: list[str] = field(default_factory=list)


def behind(
    followers: Iterable[Mapping[str, Any]],
    position: int,
    generation: int,
    seen: dict[str, Seen],
    *,
    now: float,
    wall_now: float,
    clock_skew_s: float,
) -> list[str]:
    """The ids of the followers that may still answer on a state before `position`.

    `seen` is the barrier's memory between calls (updated here); `now` its monotonic clock,
    `wall_now` its wall clock (seconds since the epoch)."""
    waiting: list[str] = []
    for doc in followers:
        follower_id = str(doc["_id"])
        if doc.get("generation") == generation and doc.get("position", JOINING) >= position:
            continue
        lease_s = float(doc.get("lease_s", 0))
        beat_at = doc.get("heartbeat_at")
        if beat_at is not None and _epoch(beat_at) + lease_s + clock_skew_s < wall_now:
            continue  # gone long ago
        beats = int(doc.get("beats", 0))
        first = seen.get(follower_id)
        if first is None or first.beats != beats:
            seen[follower_id] = Seen(beats, now)
            waiting.append(follower_id)
        elif now - first.at <= lease_s:
            waiting.append(follower_id)
    return waiting


def _epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


class FollowerRegistry:
    """The followers of one state, in a collection of the database of its owner."""

    def __init__(
        self,
        collection: AsyncCollection,
        *,
        clock_skew_s: float = 1.0,
        poll_s: float = 0.02,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.collection = collection
        self.clock_skew_s = clock_skew_s
        self.poll_s = poll_s
        self.wall = wall
        self.clock = clock

    async def beat(
        self,
        follower_id: str,
        position: int,
        *,
        lease_s: float,
        generation: int = 0,
        **info: Any,
    ) -> None:
        """Record how far `follower_id` has read (one upsert)."""
        await self.collection.update_one(
            {"_id": follower_id},
            {
                "$set": {
                    "position": position,
                    "generation": generation,
                    "lease_s": lease_s,
                    "heartbeat_at": datetime.fromtimestamp(self.wall(), UTC),
                    **info,
                },
                "$inc": {"beats": 1},
            },
            upsert=True,
        )

    async def leave(self, follower_id: str) -> None:
        await self.collection.delete_one({"_id": follower_id})

    async def forget_gone(self, older_than_s: float) -> int:
        """Remove followers whose last beat is older than `older_than_s` (wall clock)."""
        horizon = datetime.fromtimestamp(self.wall() - older_than_s, UTC)
        result = await self.collection.delete_many({"heartbeat_at": {"$lt": horizon}})
        return result.deleted_count

    async def followers(self) -> list[dict[str, Any]]:
        return await self.collection.find({}).to_list(None)

    async def wait_for(
        self, position: int, *, generation: int = 0, timeout_s: float
    ) -> BarrierOutcome:
        """Wait until no follower can answer on a state before `position` (see the module)."""
        started = self.clock()
        seen: dict[str, Seen] = {}
        count = 0
        waiting: list[str] = []
        while True:
            docs = await self.followers()
            count = len(docs)
            waiting = behind(
                docs,
                position,
                generation,
                seen,
                now=self.clock(),
                wall_now=self.wall(),
                clock_skew_s=self.clock_skew_s,
            )
            waited = self.clock() - started
            if not waiting:
                return BarrierOutcome(True, waited, count)
            if waited >= timeout_s:
                return BarrierOutcome(False, waited, count, waiting)
            await asyncio.sleep(min(self.poll_s, max(timeout_s - waited, 0.001)))
