"""Identity's numbered list of ended sessions and accounts, which every other API process
follows (`studyshare.plumbing.session_feed`), and the registry of those followers.

An end gets the next number by inserting `_id = head + 1` (the head read first; a taken
number is tried again), outside any transaction: number n + 1 is stored only once n is
visible, so a follower that has read up to n has missed nothing before it. The newest end is
never pruned, so numbers never repeat. A process that records an end wakes its own waiting
polls at once; those of other processes learn of it from a change stream (or, where there is
none, a poll of the head every `poll_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.revocations import Ending

log = get_logger(__name__)

SESSION_ENDS = "session_ends"
SESSION_FOLLOWERS = "session_followers"
PRUNE_EVERY_S = 60.0


class SessionEnds:
    def __init__(
        self,
        db: AsyncDatabase,
        *,
        keep_s: float = 3600.0,
        poll_s: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.col = db[SESSION_ENDS]
        self.keep_s = keep_s
        self.poll_s = poll_s
        self.clock = clock
        self.known = 0
        self._moved = asyncio.Event()
        self._pruned_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def ensure_indexes(self) -> None:
        await self.col.create_index([("at", ASCENDING)], name="by_time")
        await self.col.create_index([("key", ASCENDING), ("at", ASCENDING)], name="by_key")

    async def account_ended(self, user_id: str, issued_at: float) -> str | None:
        """Why the account's tokens issued at `issued_at` ended since (None: they did not)."""
        doc = await self.col.find_one(
            {"key": user_id, "at": {"$gte": issued_at}, "kind": "account"}, {"reason": 1}
        )
        return None if doc is None else str(doc["reason"])

    async def head(self) -> int:
        doc = await self.col.find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
        return int(doc["_id"]) if doc else 0

    async def record(self, endings: Sequence[Ending]) -> int:
        """Store each end under the next number; the last number."""
        seq = 0
        for ending in endings:
            while True:
                seq = await self.head() + 1
                try:
                    await self.col.insert_one(
                        {"_id": seq, **ending.as_record(), "recorded_at": datetime.now(UTC)}
                    )
                    break
                except DuplicateKeyError:
                    continue
        self._advance(seq)
        if self.clock() - self._pruned_at > PRUNE_EVERY_S:
            await self.prune()
        return seq

    async def after(self, seq: int | None) -> list[dict[str, Any]]:
        """The ends numbered above `seq` (every kept end when None), oldest first."""
        query = {"_id": {"$gt": seq}} if seq is not None else {}
        return await self.col.find(query).sort("_id", ASCENDING).to_list(None)

    async def prune(self) -> int:
        """Forget ends older than `keep_s`, never the newest (numbers must not repeat)."""
        self._pruned_at = self.clock()
        head = await self.head()
        result = await self.col.delete_many(
            {"_id": {"$lt": head}, "at": {"$lt": self.clock() - self.keep_s}}
        )
        return result.deleted_count

    async def wait_beyond(self, seq: int, timeout_s: float) -> None:
        """Until an end numbered above `seq` is known to this process, or `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.known <= seq:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            moved = self._moved
            if self.known > seq:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(moved.wait(), min(remaining, self.poll_s))
            if not self.watching:
                self._advance(await self.head())

    def _advance(self, head: int) -> None:
        if head > self.known:
            self.known = head
            self._moved.set()
            self._moved = asyncio.Event()

    # -- following the collection --------------------------------------------------------

    watching = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="session-ends-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        """Learn of ends recorded by other processes from a change stream."""
        while True:
            try:
                self._advance(await self.head())
                async with await self.col.watch(
                    [{"$match": {"operationType": "insert"}}, {"$project": {"documentKey": 1}}],
                    max_await_time_ms=1000,
                ) as changes:
                    self.watching = True
                    self._advance(await self.head())
                    async for change in changes:
                        self._advance(int(change["documentKey"]["_id"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session_ends.change_stream_unavailable", error=str(exc))
            finally:
                self.watching = False
            await asyncio.sleep(5.0)
