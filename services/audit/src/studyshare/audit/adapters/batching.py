"""`$in` lookups in chunks: SecantusDB answers a long `$in` list in quadratic time (1,000 ids
take seconds, 10 x 100 ids a few hundredths), so every `$in` on a hot path goes through here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

CHUNK = 100


async def find_in(
    collection: AsyncCollection,
    field: str,
    values: Iterable[Any],
    projection: dict[str, Any] | None = None,
    *,
    extra: dict[str, Any] | None = None,
    session: AsyncClientSession | None = None,
    chunk: int = CHUNK,
) -> AsyncIterator[dict[str, Any]]:
    """Documents whose `field` is one of `values` (and match `extra`), chunk by chunk."""
    ordered = sorted(set(values))
    for start in range(0, len(ordered), chunk):
        query = {field: {"$in": ordered[start : start + chunk]}, **(extra or {})}
        async for doc in collection.find(query, projection, session=session):
            yield doc
