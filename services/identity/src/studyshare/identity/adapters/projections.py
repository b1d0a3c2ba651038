"""The worker's read model of other services' events: reference numbers (from `study.events`),
which the patient login reads, keyed by their reference id (`studyshare.plumbing.reference_ids`):
the number itself is never stored here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry
from studyshare.contracts.events.study import (
    PincodeSet,
    ReferenceNumberIssued,
    ReferenceNumberRevoked,
)
from studyshare.identity.adapters.pincodes import PincodeKeeper
from studyshare.identity.domain.patient import ReferenceNumberView
from studyshare.plumbing.projection import GenerationPointer, Projection, ProjectionContext
from studyshare.plumbing.reference_ids import normalized

NAME = "reference_numbers"
COLLECTION = "numbers"


class ReferenceNumbers(Projection):
    """One document per reference number, `_id` its reference id: study, validity, birth date,
    mobile, and the argon2 hash identity made of the pincode it opened (`PincodeKeeper`).

    A number issued before reference ids (a v1 `ReferenceNumberIssued`, upcast) goes by its old
    clear number as its id, and is marked `legacy`: only those may be found by the number
    itself (`reference`)."""

    name = NAME
    topics = ("study.events",)
    collections = (COLLECTION,)

    def __init__(self, pincodes: PincodeKeeper) -> None:
        self.pincodes = pincodes

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        numbers = ctx.collection(COLLECTION)
        payloads = [registry.payload(envelope) for envelope in events]
        # one argon2 hash at a time (each takes its memory cost), before the first write
        pincode_sets = [e for e in payloads if isinstance(e, PincodeSet)]
        hashes = iter([await self.pincodes.hash_of(e) for e in pincode_sets])
        for envelope, e in zip(events, payloads, strict=True):
            if isinstance(e, ReferenceNumberIssued):
                doc = e.model_dump(
                    mode="python", exclude={"reference_id", "sealed_number", "issued_by"}
                )
                doc["patient_birth_date"] = (
                    e.patient_birth_date.isoformat() if e.patient_birth_date else None
                )
                doc.update(revoked=False, issued_at=envelope.occurred_at)
                if e.legacy_reference_number is not None:
                    doc["legacy"] = True  # its id is the number: found by the number typed
                await numbers.update_one(
                    {"_id": e.reference_id},
                    {"$set": doc, "$setOnInsert": {"pincode_hash": None}},
                    upsert=True,
                    session=ctx.session,
                )
            elif isinstance(e, ReferenceNumberRevoked):
                await numbers.update_one(
                    {"_id": e.reference_id},
                    {"$set": {"revoked": True, "study_uid": e.study_uid}},
                    upsert=True,
                    session=ctx.session,
                )
            elif isinstance(e, PincodeSet):
                await numbers.update_one(
                    {"_id": e.reference_id},
                    {"$set": {"pincode_hash": next(hashes), "study_uid": e.study_uid}},
                    upsert=True,
                    session=ctx.session,
                )

    def comparable(self, collection: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """A rebuild hashes each pincode anew (another salt): compare whether one is kept."""
        if collection != COLLECTION or "pincode_hash" not in doc:
            return doc
        kept = {k: v for k, v in doc.items() if k != "pincode_hash"}
        return {**kept, "pincode_kept": doc["pincode_hash"] is not None}


_pointers: dict[str, GenerationPointer] = {}


async def reference(db: AsyncDatabase, ref_id: str, typed: str) -> ReferenceNumberView | None:
    """The reference a patient's typed number opens: the one whose id is `ref_id` (the id of
    what was typed), else a legacy one (issued before reference ids, its id the number) named
    `typed` as issued. A reference's id typed as a number finds nothing: ids are not
    credentials."""
    pointer = _pointers.get(db.name)
    if pointer is None or pointer.db is not db:
        pointer = _pointers[db.name] = GenerationPointer(db, NAME)
    numbers = await pointer.collection(COLLECTION)
    doc = await numbers.find_one({"_id": ref_id})
    if doc is None:
        doc = await numbers.find_one({"_id": normalized(typed), "legacy": True})
    if doc is None or "valid_to" not in doc:
        return None
    return view_of(doc["_id"], doc)


def view_of(ref_id: str, doc: dict[str, Any]) -> ReferenceNumberView:
    birth = doc.get("patient_birth_date")
    return ReferenceNumberView(
        reference_id=ref_id,
        study_uid=doc["study_uid"],
        department_id=doc.get("department_id"),
        valid_from=doc.get("valid_from"),
        valid_to=doc.get("valid_to"),
        complies_with_rule=doc.get("complies_with_rule", True),
        patient_birth_date=date.fromisoformat(birth) if birth else None,
        patient_mobile=doc.get("patient_mobile"),
        pincode_required=bool(doc.get("pincode_required")),
        pincode_hash=doc.get("pincode_hash"),
        revoked=bool(doc.get("revoked")),
    )
