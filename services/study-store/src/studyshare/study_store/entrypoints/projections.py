"""Every projection the study-store worker runs.

`AccessDecisions` folds share, identity and study events into the access read model
(`adapters.read_models`); the API processes load it at start-up and follow its `seq`. The DICOM
side's projections (`entrypoints.dicom_projections`) run beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, ReplaceOne, ReturnDocument

from studyshare.contracts.envelope import EventEnvelope
from studyshare.plumbing.projection import Projection, ProjectionContext
from studyshare.plumbing.settings import ServiceSettings
from studyshare.study_store.adapters.read_models import ACCESS_PROJECTION, doc_id_for, fold
from studyshare.study_store.entrypoints.dicom_projections import dicom_projections


class AccessDecisions(Projection):
    """The access decision read model: one document per study, bucket, OTP verification,
    group, user, department, break-the-glass, reference number and read message."""

    name = ACCESS_PROJECTION
    topics = ("share.events", "identity.events", "study.events")
    collections = ("docs", "meta")

    async def setup(self, ctx: ProjectionContext) -> None:
        await ctx.collection("docs").create_index([("seq", ASCENDING)], name="seq")
        await ctx.collection("docs").create_index([("kind", ASCENDING)], name="kind")

    def comparable(self, collection: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """Documents must be rebuilt exactly; their `seq` (and the counter in `meta`) follow
        commit order and batching, so they may differ."""
        if collection == "meta":
            return None
        return {k: v for k, v in doc.items() if k != "seq"}

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        ids = {i for e in events if (i := doc_id_for(e)) is not None}
        if not ids:
            return
        coll = ctx.collection("docs")
        docs = {
            d["_id"]: d async for d in coll.find({"_id": {"$in": sorted(ids)}}, session=ctx.session)
        }
        changed: list[str] = []
        for envelope in events:
            doc_id = fold(docs, envelope)
            if doc_id is not None and doc_id not in changed:
                changed.append(doc_id)
        if not changed:
            return
        # Reserve a range of sequence numbers; the counter write serialises concurrent
        # batches, so sequence order is commit order and readers never miss a document.
        counter = await ctx.collection("meta").find_one_and_update(
            {"_id": "seq"},
            {"$inc": {"value": len(changed)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=ctx.session,
        )
        first = counter["value"] - len(changed) + 1
        writes = []
        for offset, doc_id in enumerate(changed):
            doc = docs[doc_id]
            doc["seq"] = first + offset
            writes.append(ReplaceOne({"_id": doc_id}, doc, upsert=True))
        await coll.bulk_write(writes, ordered=True, session=ctx.session)


def projections(settings: ServiceSettings) -> list[Projection]:
    return [AccessDecisions(), *dicom_projections(settings)]
