"""The study store's read models written from events (run by the worker, `entrypoints.worker`).

- `AccessDecisions` folds share, identity and study events into the access read model
  (`adapters.read_models`); the API processes read it through a bounded cache and follow its `seq`.
- `DepartmentEndpoints` (identity.events): departments with their kind and PACS/RSW endpoints
  (read by `service_layer.forwarding.DepartmentDirectory`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, ReplaceOne, ReturnDocument, UpdateOne

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import payload_of
from studyshare.contracts.events.identity import DepartmentCreated
from studyshare.plumbing.projection import Projection, ProjectionContext
from studyshare.study_store.adapters.access_documents import ensure_lookup_indexes
from studyshare.study_store.adapters.read_models import (
    ACCESS_PROJECTION,
    doc_id_for,
    fold,
    remap,
)

#: the departments' read model (its projection's name)
DIRECTORY = "dicom_departments"


class AccessDecisions(Projection):
    """The access decision read model: one document per study, bucket, OTP verification,
    group, user, department, break-the-glass, reference number and read message.

    An anonymized bucket's document lists the study UIDs its recipients see
    (`remapped_study_uids`, keyed with `anonymization_secret`), so a request naming one finds
    its study by index."""

    name = ACCESS_PROJECTION
    topics = ("share.events", "identity.events", "study.events")
    collections = ("docs", "meta")

    def __init__(self, anonymization_secret: str = "") -> None:
        self.anonymization_secret = anonymization_secret

    async def setup(self, ctx: ProjectionContext) -> None:
        await ctx.collection("docs").create_index([("seq", ASCENDING)], name="seq")
        await ctx.collection("docs").create_index([("kind", ASCENDING)], name="kind")
        await ensure_lookup_indexes(ctx.collection("docs"))

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
            remap(doc, self.anonymization_secret)
            doc["seq"] = first + offset
            writes.append(ReplaceOne({"_id": doc_id}, doc, upsert=True))
        await coll.bulk_write(writes, ordered=True, session=ctx.session)


class DepartmentEndpoints(Projection):
    name = DIRECTORY
    topics = ("identity.events",)
    collections = ("departments",)

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        writes = []
        for envelope in events:
            if envelope.event_type != "DepartmentCreated":
                continue
            event = payload_of(envelope, DepartmentCreated)
            writes.append(
                UpdateOne(
                    {"_id": event.department_id},
                    {
                        "$set": {
                            "name": event.name,
                            "kind": event.kind,
                            "pacs": event.pacs.model_dump() if event.pacs else None,
                            "rsw": event.rsw.model_dump() if event.rsw else None,
                        }
                    },
                    upsert=True,
                )
            )
        if writes:
            await ctx.collection("departments").bulk_write(writes, session=ctx.session)
