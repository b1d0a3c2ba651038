"""The DICOM index in MongoDB: studies, series and instances with their DICOM JSON metadata.

Written by ingest (STOW-RS, C-STORE, share messages) in batches, read by QIDO/WADO, downloads
and forwarding. The objects stay in the blob store (`BlobStore`); documents hold their key
(`path`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, InsertOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.plumbing.mongo import IN_CHUNK, find_in

STUDIES = "dicom_studies"
SERIES = "dicom_series"
INSTANCES = "dicom_instances"

InstanceKind = str  # "image" | "report" | "message"

#: a study document's place in a search's order: the date and UID it is shown with, and its
#: own UID
Placing = Callable[[dict[str, Any]], tuple[str, str, str]]


def _own_place(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc.get("study_date") or "", doc["_id"], doc["_id"]


class InstanceIndex:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.studies = db[STUDIES]
        self.series = db[SERIES]
        self.instances = db[INSTANCES]

    async def ensure_indexes(self) -> None:
        await self.instances.create_index(
            [("study_uid", ASCENDING), ("series_uid", ASCENDING), ("instance_number", ASCENDING)]
        )
        await self.series.create_index([("study_uid", ASCENDING), ("series_number", ASCENDING)])
        await self.studies.create_index([("study_date", DESCENDING)])
        await self.studies.create_index([("patient_id", ASCENDING)])
        await self.studies.create_index([("upload_batch_ids", ASCENDING)])

    async def known_instances(
        self, sop_uids: Iterable[str], session: AsyncClientSession | None = None
    ) -> set[str]:
        ids = list(sop_uids)
        if not ids:
            return set()
        cursor = self.instances.find({"_id": {"$in": ids}}, {"_id": 1}, session=session)
        return {doc["_id"] async for doc in cursor}

    async def digests(
        self, sop_uids: Iterable[str], session: AsyncClientSession | None = None
    ) -> dict[str, str | None]:
        """The SHA-256 of each instance's content (None where indexed before they were kept)."""
        ids = list(sop_uids)
        if not ids:
            return {}
        cursor = self.instances.find({"_id": {"$in": ids}}, {"sha256": 1}, session=session)
        return {doc["_id"]: doc.get("sha256") async for doc in cursor}

    async def series_studies(
        self, series_uids: Iterable[str], session: AsyncClientSession | None = None
    ) -> dict[str, str]:
        """The study of each indexed series among `series_uids`."""
        ids = list(series_uids)
        if not ids:
            return {}
        cursor = self.series.find({"_id": {"$in": ids}}, {"study_uid": 1}, session=session)
        return {doc["_id"]: doc["study_uid"] async for doc in cursor}

    async def add(
        self,
        instances: list[dict[str, Any]],
        series: list[tuple[dict[str, Any], int]],
        studies: list[tuple[dict[str, Any], dict[str, Any]]],
        session: AsyncClientSession | None = None,
    ) -> None:
        """Insert new instances; upsert their series (with the count of new instances) and
        studies (`(on_insert, update)` pairs). Three bulk writes per batch. A series is matched
        with its study: one of another study is never counted, its insert fails (duplicate
        key)."""
        if instances:
            await self.instances.bulk_write(
                [InsertOne(doc) for doc in instances], ordered=False, session=session
            )
        if series:
            await self.series.bulk_write(
                [
                    UpdateOne(
                        {"_id": doc["_id"], "study_uid": doc["study_uid"]},
                        {"$setOnInsert": doc, "$inc": {"instance_count": count}},
                        upsert=True,
                    )
                    for doc, count in series
                ],
                ordered=False,
                session=session,
            )
        if studies:
            await self.studies.bulk_write(
                [
                    UpdateOne(
                        {"_id": on_insert["_id"]},
                        {"$setOnInsert": on_insert, **update},
                        upsert=True,
                    )
                    for on_insert, update in studies
                ],
                ordered=False,
                session=session,
            )

    async def study(self, study_uid: str) -> dict[str, Any] | None:
        return await self.studies.find_one({"_id": study_uid})

    async def series_of(self, study_uid: str) -> list[dict[str, Any]]:
        cursor = self.series.find({"study_uid": study_uid}).sort(
            [("series_number", ASCENDING), ("_id", ASCENDING)]
        )
        return [doc async for doc in cursor]

    async def instances_of(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        with_meta: bool = True,
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"study_uid": study_uid}
        if series_uid is not None:
            query["series_uid"] = series_uid
        if sop_instance_uid is not None:
            query["_id"] = sop_instance_uid
        projection = None if with_meta else {"meta": 0}
        cursor = self.instances.find(query, projection).sort(
            [("series_uid", ASCENDING), ("instance_number", ASCENDING), ("_id", ASCENDING)]
        )
        return [doc async for doc in cursor]

    async def search_studies(self, query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Every study matching `query`, newest first (then by UID)."""
        async for doc in self.studies.find(query).sort(
            [("study_date", DESCENDING), ("_id", ASCENDING)]
        ):
            yield doc

    async def search_among(
        self, searches: Iterable[tuple[Iterable[str], dict[str, Any], Placing | None]]
    ) -> AsyncIterator[dict[str, Any]]:
        """The studies among each search's UIDs that match its query, newest first, each
        placed by the (date, UID) its search's `Placing` gives (as the caller sees them: an
        anonymized study by its shifted date and remapped UID), else by its own. The dates
        of those that match are read first and sorted here, then the documents in that order,
        a chunk at a time: every `$in` goes `IN_CHUNK` values at a time (the local database's
        costs more per value the longer it is: 82 s for 10,000 UIDs at once)."""
        placed = {
            (place or _own_place)(d)
            for study_uids, query, place in searches
            async for d in find_in(self.studies, "_id", study_uids, {"study_date": 1}, extra=query)
        }
        ordered = sorted(placed, key=lambda p: p[1])
        ordered.sort(key=lambda p: p[0], reverse=True)  # stable: UIDs stay ascending per date
        for start in range(0, len(ordered), IN_CHUNK):
            uids = [uid for _, _, uid in ordered[start : start + IN_CHUNK]]
            docs = {d["_id"]: d async for d in find_in(self.studies, "_id", uids)}
            for uid in uids:
                if uid in docs:
                    yield docs[uid]

    async def studies_uploaded_with(self, study_uid: str) -> list[str]:
        """Every study sharing an upload batch with this one ("uploaded together")."""
        doc = await self.studies.find_one({"_id": study_uid}, {"upload_batch_ids": 1})
        if not doc or not doc.get("upload_batch_ids"):
            return []
        cursor = self.studies.find(
            {"upload_batch_ids": {"$in": doc["upload_batch_ids"]}}, {"_id": 1}
        )
        return sorted([d["_id"] async for d in cursor])
