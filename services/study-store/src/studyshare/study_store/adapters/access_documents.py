"""Where the access model reads its documents from: the read model in MongoDB, or memory.

`MongoAccessDocuments` reads the live generation of `access_decisions` (see
`adapters.read_models`): documents by id, documents of a kind naming a value in a field (each
such field indexed with the kind), and the documents written after a sequence number.
`InMemoryAccessDocuments` is the same over a dictionary, for fast tests and benchmarks.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import EventEnvelope
from studyshare.plumbing.mongo import find_in
from studyshare.plumbing.projection import GenerationPointer, collection_name
from studyshare.study_store.adapters.read_models import (
    ACCESS_PROJECTION,
    Doc,
    doc_id_for,
    fold,
    remap,
)

#: (kind, field) of every lookup the access model makes by something other than the id
LOOKUPS: tuple[tuple[str, str], ...] = (
    ("bucket", "study_uids"),  # the buckets sharing a study
    ("bucket", "holder_ids"),  # the buckets naming a recipient (the overview)
    ("bucket", "remapped_study_uids"),  # the anonymized bucket showing a study under a UID
    ("group", "member_ids"),  # the groups of a user
    ("study", "owner_id"),
    ("study", "department_id"),
    ("btg", "user_id"),  # a user's break-the-glass unlocks
    ("ref", "study_uid"),  # a study's reference numbers
)


def values_of(doc: Doc, field: str) -> list[Any]:
    value = doc.get(field)
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple | set | frozenset) else [value]


class AccessDocuments(Protocol):
    async def generation(self) -> int:
        """The live generation of the read model."""

    async def use(self, generation: int) -> int:
        """Read `generation` from now on; return its committed sequence number."""

    async def changed_since(self, seq: int) -> list[Doc]:
        """The documents written after `seq`, in sequence order."""

    async def by_ids(self, ids: Sequence[str]) -> list[Doc]: ...

    async def where(
        self, kind: str, field: str | None, values: Sequence[str], fields: Sequence[str] = ()
    ) -> list[Doc]:
        """Documents of `kind` whose `field` holds one of `values` (every one of the kind when
        `field` is None); only `fields` of them when given."""

    def stream(
        self, kind: str, field: str | None, values: Sequence[str], fields: Sequence[str] = ()
    ) -> AsyncIterator[Doc]:
        """The same, one at a time (a list as long as an archive is never held)."""


class MongoAccessDocuments:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.pointer = GenerationPointer(db, ACCESS_PROJECTION, cache_s=1.0)
        self._generation = 0

    @property
    def docs(self):
        return self.db[collection_name(ACCESS_PROJECTION, self._generation, "docs")]

    async def generation(self) -> int:
        return await self.pointer.current()

    async def use(self, generation: int) -> int:
        self._generation = generation
        await ensure_lookup_indexes(self.docs)
        meta = self.db[collection_name(ACCESS_PROJECTION, generation, "meta")]
        counter = await meta.find_one({"_id": "seq"})
        return counter["value"] if counter else 0

    async def changed_since(self, seq: int) -> list[Doc]:
        return await self.docs.find({"seq": {"$gt": seq}}).sort("seq", ASCENDING).to_list()

    async def by_ids(self, ids: Sequence[str]) -> list[Doc]:
        return [doc async for doc in find_in(self.docs, "_id", ids)]

    async def where(
        self, kind: str, field: str | None, values: Sequence[str], fields: Sequence[str] = ()
    ) -> list[Doc]:
        return [doc async for doc in self.stream(kind, field, values, fields)]

    async def stream(
        self, kind: str, field: str | None, values: Sequence[str], fields: Sequence[str] = ()
    ) -> AsyncIterator[Doc]:
        if field is None:
            async for doc in self.docs.find({"kind": kind}, _projection(fields)):
                yield doc
            return
        async for doc in find_in(self.docs, field, values, _projection(fields)):
            if doc.get("kind") == kind:
                yield doc


def _projection(fields: Sequence[str]) -> dict[str, int] | None:
    return {**dict.fromkeys(fields, 1), "kind": 1} if fields else None


async def ensure_lookup_indexes(collection) -> None:
    """The indexes of every lookup (`LOOKUPS`), beside the projection's own (`seq`, `kind`).
    A lookup names its field only and checks the kind on what it reads: given the kind too,
    a planner may prefer the `kind` index and scan every document of the kind (SecantusDB
    does: 19 s for 100 study UIDs among 100,000 buckets, 12 ms without)."""
    for kind, field in LOOKUPS:
        await collection.create_index(
            [(field, ASCENDING), ("kind", ASCENDING)], name=f"{kind}_{field}"
        )


class InMemoryAccessDocuments:
    """The read model as a dictionary: fold events into it (`apply`), read it as from MongoDB."""

    def __init__(self, anonymization_secret: str = "") -> None:
        self.anonymization_secret = anonymization_secret
        self.docs: dict[str, Doc] = {}
        self.seq = 0

    def apply(self, envelopes: Iterable[EventEnvelope]) -> None:
        for envelope in envelopes:
            doc_id = doc_id_for(envelope)
            if doc_id is None:
                continue
            scratch = {doc_id: copy.deepcopy(self.docs[doc_id])} if doc_id in self.docs else {}
            if fold(scratch, envelope) is not None:  # a copy: a cached document never changes
                self.put(scratch[doc_id])

    def put(self, doc: Doc) -> None:
        """Write one document as the projection would (its remapped UIDs, the next `seq`)."""
        remap(doc, self.anonymization_secret)
        self.seq += 1
        self.docs[doc["_id"]] = {**doc, "seq": self.seq}

    async def generation(self) -> int:
        return 0

    async def use(self, generation: int) -> int:
        return self.seq

    async def changed_since(self, seq: int) -> list[Doc]:
        return sorted((d for d in self.docs.values() if d["seq"] > seq), key=lambda d: d["seq"])

    async def by_ids(self, ids: Sequence[str]) -> list[Doc]:
        return [self.docs[i] for i in ids if i in self.docs]

    async def where(
        self, kind: str, field: str | None, values: Sequence[str], fields: Sequence[str] = ()
    ) -> list[Doc]:
        wanted = set(values)
        return [
            d
            for d in self.docs.values()
            if d.get("kind") == kind and (field is None or wanted.intersection(values_of(d, field)))
        ]

    async def stream(
        self, kind: str, field: str | None, values: Sequence[str], fields: Sequence[str] = ()
    ) -> AsyncIterator[Doc]:
        for doc in await self.where(kind, field, values, fields):
            yield doc
