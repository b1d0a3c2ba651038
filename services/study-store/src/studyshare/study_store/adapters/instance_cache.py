"""The instance documents of recently read studies, in memory: WADO-RS reads without a query.

A study's instance documents (`InstanceIndex.instances_of`, metadata included) are fetched once
and served from memory, with each instance's DICOM JSON already serialized per base URL. Access
is never cached here: every request still asks the access model and filters the documents
with its own decision.

A study's entry is dropped and fetched again
- at once, when this process indexes instances of it (`forget`, called by ingest: STOW-RS);
- when its `version` changes: the access model's copy of the study (its `seq` moves with every
  `StudyReceived`/`StudyInstancesAdded` written by any process: C-STORE, share messages);
- in any case `ttl_s` after it was fetched;
- when the least recently read studies make room (`max_instances` documents in all).
Concurrent misses of one study share one query; a fetch that overlapped a `forget` is not
kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from studyshare.study_store.adapters.instances import InstanceIndex

Doc = dict[str, Any]


@dataclass
class _Entry:
    docs: list[Doc]
    version: Hashable
    fetched_at: float
    #: e.g. (base URL, sop instance uid) -> the instance's DICOM JSON, serialized
    rendered: dict[Hashable, bytes] = field(default_factory=dict)


class StudyInstances:
    """`instances_of(study_uid, series_uid, sop_uid)` from memory; see the module doc."""

    def __init__(
        self,
        index: InstanceIndex,
        version: Callable[[str], Hashable] = lambda _: None,
        *,
        ttl_s: float = 2.0,
        max_instances: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.version = version
        self.ttl_s = ttl_s
        self.max_instances = max_instances
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._held = 0  # instance documents in all entries
        self._fetching: dict[str, asyncio.Future[_Entry]] = {}
        self._forgets = 0

    async def instances_of(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[Doc]:
        """The study's instance documents (in `InstanceIndex` order), narrowed to a series
        and an instance. Shared: treat them as read-only."""
        docs = (await self._entry(study_uid)).docs
        if series_uid is not None:
            docs = [d for d in docs if d.get("series_uid") == series_uid]
        if sop_uid is not None:
            docs = [d for d in docs if d["_id"] == sop_uid]
        return docs

    def rendered(self, study_uid: str, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """`render()` of something that depends only on the study's immutable instances (and
        `key`), kept with the study's entry and dropped with it."""
        entry = self._entries.get(study_uid)
        if entry is None:
            return render()
        out = entry.rendered.get(key)
        if out is None:
            if len(entry.rendered) >= 8 * max(len(entry.docs), 1):
                entry.rendered.clear()  # many base URLs (Host headers): start again
            out = entry.rendered[key] = render()
        return out

    def forget(self, study_uid: str) -> None:
        """Drop the study now (its instances changed in this process)."""
        self._drop(study_uid)
        self._fetching.pop(study_uid, None)
        self._forgets += 1

    async def _entry(self, study_uid: str) -> _Entry:
        entry = self._entries.get(study_uid)
        version = self.version(study_uid)
        if entry is not None:
            if entry.version == version and self.clock() - entry.fetched_at < self.ttl_s:
                self._entries.move_to_end(study_uid)
                return entry
            self._drop(study_uid)
        pending = self._fetching.get(study_uid)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._fetching[study_uid] = future
        forgets = self._forgets
        try:
            fetched_at = self.clock()
            docs = await self.index.instances_of(study_uid)
            entry = _Entry(docs, version, fetched_at)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            if self._fetching.get(study_uid) is future:
                del self._fetching[study_uid]
        future.set_result(entry)
        if self._forgets == forgets and len(docs) <= self.max_instances:
            # nothing changed here meanwhile; the least recently read studies make room
            self._drop(study_uid)
            self._entries[study_uid] = entry
            self._held += len(docs)
            while self._held > self.max_instances:
                self._drop(next(iter(self._entries)))
        return entry

    def _drop(self, study_uid: str) -> None:
        entry = self._entries.pop(study_uid, None)
        if entry is not None:
            self._held -= len(entry.docs)
