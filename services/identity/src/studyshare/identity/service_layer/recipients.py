"""Recipient search for the share dialog: users, groups and departments (incl. PACS).

Three ways in, as the manuals' share dialog has them: the type-ahead (`q`), the detailed
search by field (first name, last name, name, physician number and its registry, public e-mail,
public mobile; and the kind), and "select from list" (`browse`: every recipient of a kind, by
name, a page at a time, from the `browse` index).

Each search is one index scan: `{terms: <most selective word>, kind_key: {$in: kinds}}` on the
multikey `terms_kind` index, reading only ids, terms and sort names of the candidates (at most
`MAX_CANDIDATES`); the remaining words and the ranking (exact before prefix, then by name) are
applied to those, and only the requested page is fetched, by `_id`.
"""

from __future__ import annotations

from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.identity.adapters.read_models import RECIPIENTS
from studyshare.identity.domain.search import field_tokens, key_token, query_tokens, rank

RecipientKind = Literal["user", "group", "department", "pacs"]
KIND_KEYS: dict[str | None, list[str]] = {
    None: ["user", "group", "department", "pacs"],
    "user": ["user"],
    "group": ["group"],
    "department": ["department", "pacs"],
    "pacs": ["pacs"],
}
MAX_CANDIDATES = 5000


def tokens_of(q: str, criteria: dict[str, str | None] | None = None) -> list[str]:
    """The free query's words and the detailed search's tagged field words, together."""
    return query_tokens(q) + field_tokens(criteria or {})


def candidate_filter(
    q: str, kind: RecipientKind | None, criteria: dict[str, str | None] | None = None
) -> dict[str, Any] | None:
    tokens = tokens_of(q, criteria)
    if not tokens:
        return None
    return {"terms": key_token(tokens), "kind_key": {"$in": KIND_KEYS[kind]}}


async def browse(
    db: AsyncDatabase, kind: RecipientKind | None, page: int, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    """ "Select from list": the recipients of a kind (all kinds: None) by name, one page."""
    query = {"kind_key": {"$in": KIND_KEYS[kind]}}
    col = db[RECIPIENTS]
    total = await col.count_documents(query)
    cursor = (
        col.find(query, {"terms": 0})
        .sort([("sort_name", 1), ("_id", 1)])
        .skip((page - 1) * page_size)
        .limit(page_size)
    )
    return [{**d, "match": None} async for d in cursor], total


async def search(
    db: AsyncDatabase,
    q: str,
    kind: RecipientKind | None,
    page: int,
    page_size: int,
    criteria: dict[str, str | None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    query = candidate_filter(q, kind, criteria)
    if query is None:
        return [], 0
    tokens = tokens_of(q, criteria)
    col = db[RECIPIENTS]
    ranked: list[tuple[int, str, str]] = []
    cursor = col.find(query, {"terms": 1, "sort_name": 1}).limit(MAX_CANDIDATES)
    async for doc in cursor:
        r = rank(tokens, doc["terms"])
        if r is not None:
            ranked.append((r, doc.get("sort_name", ""), doc["_id"]))
    ranked.sort()
    chosen = ranked[(page - 1) * page_size : page * page_size]
    if not chosen:
        return [], len(ranked)
    docs = {
        d["_id"]: d async for d in col.find({"_id": {"$in": [c[2] for c in chosen]}}, {"terms": 0})
    }
    items = [
        {**docs[_id], "match": "exact" if r == 0 else "prefix"}
        for r, _, _id in chosen
        if _id in docs
    ]
    return items, len(ranked)
