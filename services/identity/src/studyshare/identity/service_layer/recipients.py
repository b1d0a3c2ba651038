"""Recipient search for the share dialog: users, groups and departments (incl. PACS), exact
matches first, then prefix matches, each by name; always an equality match on the multikey
`terms` index (see `domain.search`)."""

from __future__ import annotations

from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase
from studyshare.identity.adapters.read_models import RECIPIENTS
from studyshare.identity.domain.search import exact_filter, prefix_filter, query_tokens

RecipientKind = Literal["user", "group", "department", "pacs"]


def kind_filter(kind: RecipientKind | None) -> dict[str, Any]:
    if kind is None:
        return {}
    if kind == "pacs":
        return {"kind": "department", "department_kind": "pacs"}
    return {"kind": kind}


def search_filters(q: str, kind: RecipientKind | None) -> tuple[dict, dict] | None:
    """(exact tier, prefix-only tier) filters for the query, or None when it has no words."""
    tokens = query_tokens(q)
    if not tokens:
        return None
    exact = {**exact_filter(tokens), **kind_filter(kind)}
    prefix_only = {
        "$and": [prefix_filter(tokens), kind_filter(kind), {"$nor": [exact_filter(tokens)]}]
    }
    return exact, prefix_only


PROJECTION = {"terms": 0}


async def search(
    db: AsyncDatabase, q: str, kind: RecipientKind | None, page: int, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    filters = search_filters(q, kind)
    if filters is None:
        return [], 0
    exact, prefix_only = filters
    col = db[RECIPIENTS]
    n_exact = await col.count_documents(exact)
    n_prefix = await col.count_documents(prefix_only)
    offset = (page - 1) * page_size
    items: list[dict[str, Any]] = []
    if offset < n_exact:
        cursor = col.find(exact, PROJECTION).sort([("sort_name", 1), ("_id", 1)])
        items += [{**d, "match": "exact"} async for d in cursor.skip(offset).limit(page_size)]
    remaining = page_size - len(items)
    if remaining > 0:
        cursor = col.find(prefix_only, PROJECTION).sort([("sort_name", 1), ("_id", 1)])
        items += [
            {**d, "match": "prefix"}
            async for d in cursor.skip(max(0, offset - n_exact)).limit(remaining)
        ]
    return items, n_exact + n_prefix
