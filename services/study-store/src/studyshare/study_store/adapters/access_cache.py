"""What an API process holds of the access read model: a bounded working set, kept current.

The cache holds documents by id (absent ones too) and, for three lookups, which documents
name a value (the buckets of a study, the groups of a user, the reference numbers of a
study), the least recently used dropped beyond `max_docs` / `max_lookups`. It never holds
the model as a whole: memory follows the studies and users being opened, not the archive.

It stays current without expiry. The access model's follower reads every document the
worker writes (`changed`, in sequence order) and replaces a cached copy, or adds the
document to a cached lookup it now matches; lookups are supersets, and the caller checks
membership on the current documents. A read from the database is cached only when the
follower read nothing while it ran (`moves` unchanged), and a request joins a read in flight
only under the same condition: a document read before a revocation and returned after the
follower saw it is never kept nor handed to a later request.

Events of this process (break-the-glass, reference numbers, a first open) are folded over
the documents at once (`apply_local`) for `LOCAL_OVERLAY_S`, ahead of the worker's copy.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from studyshare.contracts.envelope import EventEnvelope
from studyshare.study_store.adapters.access_documents import LOOKUPS, AccessDocuments, values_of
from studyshare.study_store.adapters.read_models import Doc, doc_id_for, fold

LOCAL_OVERLAY_S = 300.0
#: the lookups kept in the cache: (kind, field)
CACHED_LOOKUPS = (("bucket", "study_uids"), ("group", "member_ids"), ("ref", "study_uid"))
Key = tuple[str, str, str]
T = TypeVar("T")


def keys_of(doc: Doc, lookups: Iterable[tuple[str, str]] = CACHED_LOOKUPS) -> list[Key]:
    kind = doc.get("kind")
    return [
        (kind, field, str(value))
        for k, field in lookups
        if k == kind
        for value in values_of(doc, field)
    ]


def _newer(a: Doc | None, b: Doc | None) -> Doc | None:
    if a is None or b is None:
        return a or b
    return b if b.get("seq", 0) >= a.get("seq", 0) else a


class AccessCache:
    def __init__(
        self, source: AccessDocuments, *, max_docs: int = 50_000, max_lookups: int = 20_000
    ) -> None:
        self.source = source
        self.max_docs = max_docs
        self.max_lookups = max_lookups
        self.moves = 0
        """How many batches of changes the follower has handed over."""
        self._docs: OrderedDict[str, Doc | None] = OrderedDict()
        self._lookups: OrderedDict[Key, set[str]] = OrderedDict()
        self._reading: dict[Any, tuple[int, asyncio.Future[Any]]] = {}
        self._pending: dict[str, list[tuple[float, EventEnvelope]]] = {}
        self._pending_keys: dict[Key, set[str]] = {}
        self._swept = time.monotonic()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget everything read (a new generation of the read model)."""
        self._docs.clear()
        self._lookups.clear()
        self._reading.clear()
        self.moves += 1

    # -- following --------------------------------------------------------------------------

    def changed(self, docs: Sequence[Doc]) -> None:
        """Documents the worker wrote, in sequence order (the follower's read)."""
        if not docs:
            return
        self.moves += 1
        for doc in docs:
            if doc["_id"] in self._docs:
                self._keep(self._overlaid(doc["_id"], doc))
            for key in keys_of(doc):
                if key in self._lookups:
                    self._lookups[key].add(doc["_id"])

    # -- reading ----------------------------------------------------------------------------

    async def docs(self, ids: Iterable[str]) -> dict[str, Doc]:
        """The documents of `ids` that exist (the cached copies, else one read for the rest)."""
        found: dict[str, Doc] = {}
        missing: list[str] = []
        for doc_id in ids:
            if doc_id in self._docs:
                self._docs.move_to_end(doc_id)
                doc = self._docs[doc_id]
                if doc is not None:
                    found[doc_id] = doc
                self.hits += 1
            else:
                missing.append(doc_id)
        if missing:
            self.misses += len(missing)
            wanted = tuple(sorted(set(missing)))
            found.update(await self._read(("docs", wanted), lambda: self._read_ids(wanted)))
        return found

    async def doc(self, doc_id: str) -> Doc | None:
        if doc_id in self._docs:  # the common case without a coroutine per id
            self._docs.move_to_end(doc_id)
            self.hits += 1
            return self._docs[doc_id]
        return (await self.docs((doc_id,))).get(doc_id)

    def peek(self, doc_id: str) -> Doc | None:
        """The cached copy, if any (no read)."""
        return self._docs.get(doc_id)

    async def lookup(self, kind: str, field: str, value: str) -> dict[str, Doc]:
        """The documents of `kind` naming `value` in `field` (a cached lookup)."""
        key = (kind, field, value)
        ids = self._lookups.get(key)
        if ids is None:
            self.misses += 1
            read = await self._read(key, lambda: self._read_lookups(kind, field, [value]))
            return read[value]
        self._lookups.move_to_end(key)
        self.hits += 1
        docs = await self.docs(ids)
        return {i: d for i, d in docs.items() if value in map(str, values_of(d, field))}

    async def lookups(self, kind: str, field: str, values: Sequence[str]) -> None:
        """Read the cached lookups of many values together (those not held yet)."""
        wanted = sorted({v for v in values if (kind, field, v) not in self._lookups})
        if wanted:
            await self._read_lookups(kind, field, wanted)

    def overlaid(self, doc: Doc) -> Doc:
        """A document read elsewhere, with this process's fresh events on it."""
        return self._overlaid(doc["_id"], doc) or doc

    async def where(self, kind: str, field: str | None, values: Sequence[str]) -> list[Doc]:
        """Documents of `kind` naming one of `values` in `field` (all of the kind without a
        field), read from the database each time (lists, not decisions), this process's own
        fresh events folded in."""
        moves = self.moves
        found = await self._fresh(kind, field, values)
        if moves == self.moves:
            for doc in found.values():
                self._keep(doc)
        return list(found.values())

    # -- reading from the source ------------------------------------------------------------

    async def _read(self, token: Any, read: Callable[[], Awaitable[T]]) -> T:
        """One read per token at a time; joined only while the follower has not moved."""
        reading = self._reading.get(token)
        if reading is not None and reading[0] == self.moves:
            return await asyncio.shield(reading[1])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reading[token] = (self.moves, future)
        try:
            result = await read()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            if self._reading.get(token, (None, None))[1] is future:
                del self._reading[token]
        future.set_result(result)
        return result

    async def _read_ids(self, ids: Sequence[str]) -> dict[str, Doc]:
        moves = self.moves
        read = {d["_id"]: d for d in await self.source.by_ids(ids)}
        found: dict[str, Doc] = {}
        for doc_id in ids:
            doc = self._overlaid(doc_id, read.get(doc_id))
            if moves == self.moves:
                self._keep(doc, doc_id)
            if doc is not None:
                found[doc_id] = doc
        return found

    async def _read_lookups(
        self, kind: str, field: str, values: Sequence[str]
    ) -> dict[str, dict[str, Doc]]:
        """The documents naming each of `values`, read now; kept, with the lookups, only if
        the follower read nothing meanwhile."""
        moves = self.moves
        found: dict[str, dict[str, Doc]] = {value: {} for value in values}
        for doc_id, doc in (await self._fresh(kind, field, values)).items():
            for value in map(str, values_of(doc, field)):
                if value in found:
                    found[value][doc_id] = doc
        if moves == self.moves:
            for value, docs in found.items():
                for doc in docs.values():
                    self._keep(doc)
                self._lookups[(kind, field, value)] = set(docs)
            while len(self._lookups) > self.max_lookups:
                self._lookups.popitem(last=False)
        return found

    async def _fresh(self, kind: str, field: str | None, values: Sequence[str]) -> dict[str, Doc]:
        """Documents of `kind` naming one of `values` in `field` (all of the kind without a
        field), read now, this process's fresh events folded in. Its own documents are found by
        what its events wrote, which the stored copy may lack (or not be stored yet)."""
        docs: dict[str, Doc | None] = {
            d["_id"]: d for d in await self.source.where(kind, field, values)
        }
        local = {
            doc_id
            for value in (values if field is not None else ("",))
            for doc_id in self._pending_keys.get((kind, field or "", value), ())
        }
        missing = sorted(local - set(docs))
        if missing:
            stored = {d["_id"]: d for d in await self.source.by_ids(missing)}
            docs.update({doc_id: stored.get(doc_id) for doc_id in missing})
        return {i: c for i, d in docs.items() if (c := self._overlaid(i, d)) is not None}

    def _keep(self, doc: Doc | None, doc_id: str | None = None) -> None:
        doc_id = doc_id or (doc or {})["_id"]
        cached = self._docs.get(doc_id)
        self._docs[doc_id] = _newer(cached, doc) if doc is not None else cached
        self._docs.move_to_end(doc_id)
        while len(self._docs) > self.max_docs:
            self._docs.popitem(last=False)

    # -- this process's own events ------------------------------------------------------------

    def apply_local(self, envelopes: Iterable[EventEnvelope]) -> None:
        now = time.monotonic()
        if now - self._swept > LOCAL_OVERLAY_S:
            self._sweep(now)
        for envelope in envelopes:
            doc_id = doc_id_for(envelope)
            if doc_id is None:
                continue
            self._pending.setdefault(doc_id, []).append((now, envelope))
            if doc_id in self._docs:
                self._docs[doc_id] = self._overlaid(doc_id, self._docs[doc_id])
            local = self._overlaid(doc_id, self._docs.get(doc_id)) or {}
            for key in [*keys_of(local, LOOKUPS), (local.get("kind"), "", "")]:
                self._pending_keys.setdefault(key, set()).add(doc_id)
                if key in self._lookups:
                    self._lookups[key].add(doc_id)

    def _sweep(self, now: float) -> None:
        """Drop fresh events past the overlay and the lookups only they made."""
        self._swept = now
        for doc_id in list(self._pending):
            self._overlaid(doc_id, None)
        live = set(self._pending)
        self._pending_keys = {
            key: kept for key, ids in self._pending_keys.items() if (kept := ids & live)
        }

    def _overlaid(self, doc_id: str, doc: Doc | None) -> Doc | None:
        """`doc` with this process's fresh events on it (they are idempotent per version)."""
        pending = self._pending.get(doc_id)
        if not pending:
            return doc
        horizon = time.monotonic() - LOCAL_OVERLAY_S
        pending[:] = [(t, e) for t, e in pending if t >= horizon]
        if not pending:
            del self._pending[doc_id]
            return doc
        scratch = {doc_id: copy.deepcopy(doc)} if doc is not None else {}
        for _, envelope in pending:
            fold(scratch, envelope)
        return scratch.get(doc_id, doc)

    def mark_read(self, user_id: str, study_uid: str, at: datetime) -> None:
        """The user opened the study now (their next overview shows its message read)."""
        doc_id = f"read:{user_id}:{study_uid}"
        base = self._docs.get(doc_id) or {
            "_id": doc_id,
            "kind": "read",
            "user_id": user_id,
            "study_uid": study_uid,
        }
        self._keep({**base, "read_at": at})

    def stats(self) -> dict[str, int]:
        return {
            "cached_docs": len(self._docs),
            "cached_lookups": len(self._lookups),
            "hits": self.hits,
            "misses": self.misses,
        }
