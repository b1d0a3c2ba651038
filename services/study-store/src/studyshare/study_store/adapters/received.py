"""The C-STORE receiver's journal (`scp_received`): objects acknowledged, not yet indexed.

One note per object, keyed by its blob key (one content of one instance), with what its upload
batch needs to be indexed later; written before the success status goes out, deleted once the
object is indexed. A note a recovery pass could not index is held (`held_at`, `error`): no pass
takes it again. See `service_layer.received` for who reads it, and how to see held notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

RECEIVED = "scp_received"
NOT_HELD = {"held_at": {"$exists": False}}


@dataclass(frozen=True)
class Note:
    key: str
    sha256: str
    size: int


@dataclass
class Unindexed:
    """The notes of one upload batch, older than asked for."""

    upload: dict[str, Any]
    notes: list[Note]


class ReceivedJournal:
    def __init__(self, db: AsyncDatabase) -> None:
        self.notes = db[RECEIVED]

    async def ensure_indexes(self) -> None:
        await self.notes.create_index([("received_at", ASCENDING)])
        await self.notes.create_index([("upload.batch_id", ASCENDING)])

    async def note(self, key: str, sha256: str, size: int, upload: dict[str, Any]) -> None:
        """Note a stored object of `upload` (the same content noted again stays one note)."""
        fields = {"sha256": sha256, "size": size, "upload": upload, "received_at": _now()}
        await self.notes.update_one({"_id": key}, {"$setOnInsert": fields}, upsert=True)

    async def settle(self, keys: Iterable[str]) -> None:
        """The objects under `keys` are indexed (or will never be)."""
        if ids := list(keys):
            await self.notes.delete_many({"_id": {"$in": ids}})

    async def hold(self, keys: Iterable[str], error: str) -> None:
        """The objects under `keys` could not be indexed (`error` says why): no recovery pass
        takes them again; the notes stay, for an operator to see (`held`)."""
        if ids := list(keys):
            await self.notes.update_many(
                {"_id": {"$in": ids}}, {"$set": {"held_at": _now(), "error": error}}
            )

    async def held(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The held notes, oldest first: key, batch, when received, when held and why."""
        cursor = self.notes.find({"held_at": {"$exists": True}}).sort("held_at", ASCENDING)
        return [
            {
                "key": doc["_id"],
                "batch_id": doc["upload"]["batch_id"],
                "received_at": doc["received_at"],
                "held_at": doc["held_at"],
                "error": doc.get("error", ""),
            }
            async for doc in cursor.limit(limit)
        ]

    async def unindexed(self, older_than: timedelta, limit: int = 1000) -> list[Unindexed]:
        """The upload batches with a note noted more than `older_than` ago, oldest first, each
        with all its notes (up to `limit` in all): a batch is indexed together, never split
        by the moment a recovery pass happens to look. Held notes are not among them."""
        old = self.notes.find(
            {"received_at": {"$lt": _now() - older_than}, **NOT_HELD}, {"upload": 1}
        )
        ids = [doc["upload"]["batch_id"] async for doc in old.sort("received_at").limit(limit)]
        cursor = (
            self.notes.find({"upload.batch_id": {"$in": list(dict.fromkeys(ids))}, **NOT_HELD})
            .sort("received_at", ASCENDING)
            .limit(limit)
        )
        batches: dict[str, Unindexed] = {}
        async for doc in cursor:
            upload = doc["upload"]
            batch = batches.setdefault(upload["batch_id"], Unindexed(upload, []))
            batch.notes.append(Note(doc["_id"], doc["sha256"], doc["size"]))
        return list(batches.values())


def _now() -> datetime:
    return datetime.now(UTC)
