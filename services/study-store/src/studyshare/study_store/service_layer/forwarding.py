"""PACS and RSW forwarding: request a transfer, perform it with retries, resend, list.

A transfer (`trf_...`) is requested by an event (`StudyForwardRequested`); the worker performs
it (`perform`): one C-STORE association per attempt, `StudyForwardFailed` per failed attempt
with exponential backoff between attempts, `final=True` on the last, `StudyForwarded` on
success. A resend starts a new round once the previous one has ended.

The instances go one at a time, each from a file on local disk (the blob directory's own file,
or a copy of the object streamed out of GridFS, or the anonymized copy written for an
anonymized share), so the worker holds no study and no object in memory whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.plumbing.aggregate import Repository
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.eventstore import EventStore, from_document
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.projection import GenerationPointer
from studyshare.study_store.adapters.blobstore import BlobStore, opened
from studyshare.study_store.adapters.dicom_files import anonymized_chunks
from studyshare.study_store.adapters.instances import InstanceIndex
from studyshare.study_store.adapters.pacs import Destination, PacsAssociation, StoreFailed
from studyshare.study_store.adapters.projections import DIRECTORY
from studyshare.study_store.domain.anonymize import AnonymizationKey, may_carry_burned_in_text
from studyshare.study_store.domain.exceptions import AccessChangedSinceTransfer, TransferNotFound
from studyshare.study_store.domain.study import Transfer
from studyshare.study_store.settings import StudyStoreSettings

log = get_logger(__name__)

Kind = Literal["pacs", "rsw"]


def transfer_id_for(*parts: str) -> str:
    """A deterministic transfer id, so a redelivered trigger requests nothing twice."""
    return "trf_" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def rsw_transfer_id(study_uid: str, department_id: str) -> str:
    """The one RSW transfer of a study (its status row in the Access tab)."""
    return transfer_id_for("rsw", study_uid, department_id)


@dataclass(frozen=True)
class SendTerms:
    """How a forwarder's copy of the study goes: anonymized as their share is (its bucket and
    number) or in the clear, with the report or not."""

    bucket_id: str | None = None
    anonymous_number: str | None = None
    include_report: bool = True

    @classmethod
    def of(cls, decision: AccessDecision) -> SendTerms:
        """What the caller's access decision lets them send (a new transfer goes so)."""
        return cls(
            bucket_id=decision.bucket_id,
            anonymous_number=(decision.anonymous_number or "0") if decision.anonymized else None,
            include_report=decision.report != "none" and not decision.anonymized,
        )

    def allow(self, transfer: Transfer) -> bool:
        """Whether these terms cover what `transfer` sends: in the clear only for a forwarder
        who sees the study in the clear, anonymized with their own share's key otherwise, the
        report only for one who may read it."""
        if self.anonymous_number is not None and (
            transfer.anonymous_number != self.anonymous_number
            or transfer.bucket_id != self.bucket_id
        ):
            return False
        return self.include_report or not transfer.include_report


class DepartmentDirectory:
    """Departments with their PACS / RSW endpoints, from `identity.events`."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.pointer = GenerationPointer(db, DIRECTORY)

    async def get(self, department_id: str) -> dict[str, Any] | None:
        return await (await self.pointer.collection("departments")).find_one({"_id": department_id})

    async def pacs_list(self) -> list[dict[str, Any]]:
        cursor = (
            (await self.pointer.collection("departments"))
            .find({"kind": "pacs", "pacs": {"$ne": None}})
            .sort("name", 1)
        )
        return [doc async for doc in cursor]

    async def destination(self, kind: Kind, department_id: str) -> Destination | None:
        doc = await self.get(department_id)
        endpoint = (doc or {}).get(kind)
        if not endpoint:
            return None
        return Destination(endpoint["ae_title"], endpoint["host"], int(endpoint["port"]))


class Forwarding:
    def __init__(self, db: AsyncDatabase, blobs: BlobStore, settings: StudyStoreSettings) -> None:
        self.db = db
        self.blobs = blobs
        self.settings = settings
        self.store = EventStore(db)
        self.repo: Repository[Transfer] = Repository(self.store, Transfer)
        self.index = InstanceIndex(db)
        self.directory = DepartmentDirectory(db)

    async def request(
        self,
        study_uid: str,
        kind: Kind,
        destination_id: str,
        actor: Actor,
        trigger: Literal["manual", "share", "arrival"] = "manual",
        transfer_id: str | None = None,
        bucket_id: str | None = None,
        anonymous_number: str | None = None,
        causation_id: str | None = None,
        include_report: bool = True,
    ) -> Transfer:
        transfer, _ = await self.repo.execute(
            transfer_id or new_id("trf"),
            lambda t: t.request(
                study_uid=study_uid,
                destination_kind=kind,
                destination_id=destination_id,
                trigger=trigger,
                requested_by=actor.id if actor.kind == "user" else None,
                bucket_id=bucket_id,
                anonymous_number=anonymous_number,
                include_report=include_report,
            ),
            actor,
            causation_id=causation_id,
        )
        return transfer

    async def resend(
        self,
        transfer_id: str,
        study_uid: str,
        actor: Actor,
        causation_id: str | None = None,
        terms: SendTerms | None = None,
    ) -> Transfer:
        """Send the transfer again as it was requested (same anonymization, same report), once
        `terms` (the resender's, when given) still cover that. A radiologist expects a resend to
        repeat what the PACS already got, so when their access has narrowed since it is refused
        rather than silently sent otherwise (an anonymized copy is another study at the PACS,
        which they ask for knowingly with a new transfer)."""
        existing = await self.repo.get(transfer_id)
        if not existing.exists or existing.study_uid != study_uid:
            raise TransferNotFound(f"transfer {transfer_id} does not exist for this study")
        if terms is not None and not terms.allow(existing):
            raise AccessChangedSinceTransfer(
                "your access to this study changed since this transfer was requested: "
                "request a new transfer"
            )
        transfer, _ = await self.repo.execute(
            transfer_id, lambda t: t.resend(actor.id), actor, causation_id=causation_id
        )
        return transfer

    async def perform(self, transfer_id: str, causation_id: str | None = None) -> Transfer:
        """Attempt the transfer until it succeeds or the attempts run out."""
        actor = Actor.system("study-store-forwarding")
        while True:
            transfer = await self.repo.get(transfer_id)
            if not transfer.exists or transfer.finished:
                return transfer
            try:
                count = await self._send(transfer)
            except Exception as exc:
                reason = str(exc) if isinstance(exc, StoreFailed) else f"{type(exc).__name__}"
                log.warning(
                    "transfer.attempt_failed",
                    transfer_id=transfer_id,
                    reason=reason,
                    attempt=transfer.attempts + 1,
                )
                transfer, _ = await self.repo.execute(
                    transfer_id,
                    lambda t, reason=reason: t.attempt_failed(
                        reason, self.settings.forward_max_attempts
                    ),
                    actor,
                    causation_id=causation_id,
                )
                if transfer.finished:
                    return transfer
                await asyncio.sleep(self.settings.forward_backoff_s * 2 ** (transfer.attempts - 1))
                continue
            transfer, _ = await self.repo.execute(
                transfer_id,
                lambda t, count=count: t.forwarded(count),
                actor,
                causation_id=causation_id,
            )
            log.info("transfer.forwarded", transfer_id=transfer_id, instances=count)
            return transfer

    async def _send(self, transfer: Transfer) -> int:
        destination = await self.directory.destination(
            transfer.destination_kind, transfer.destination_id
        )
        if destination is None:
            raise StoreFailed(
                f"{transfer.destination_id} has no {transfer.destination_kind} endpoint"
            )
        anonymized = transfer.anonymous_number is not None
        docs = await self.index.instances_of(transfer.study_uid, with_meta=anonymized)
        # the report only where the forwarder may read it (never on images-only or anonymized)
        reports = transfer.include_report and not anonymized
        kinds = {"image", "report"} if reports else {"image"}
        sending = [
            d
            for d in docs
            if d.get("kind") in kinds and not (anonymized and may_carry_burned_in_text(d))
        ]
        key = None
        if transfer.anonymous_number is not None:
            study = await self.index.study(transfer.study_uid) or {}
            key = AnonymizationKey.for_share(
                self.settings.anonymization_secret,
                transfer.bucket_id or "",
                transfer.anonymous_number,
                study.get("patient_id"),
            )
        if not sending:
            raise StoreFailed("the study has no instance to send")
        association = await asyncio.to_thread(
            PacsAssociation,
            destination,
            self.settings.scu_ae_title,
            [(d["sop_class_uid"], d.get("transfer_syntax") or "") for d in sending],
            self.settings.forward_timeout_s,
        )
        try:
            for doc in sending:
                await self._send_one(association, doc, key)
        finally:
            await asyncio.to_thread(association.release)
        return len(sending)

    async def _send_one(
        self, association: PacsAssociation, doc: dict[str, Any], key: AnonymizationKey | None
    ) -> None:
        if key is None:
            async with self.blobs.local_file(doc["path"]) as path:
                await asyncio.to_thread(association.send_file, path)
            return
        path = await asyncio.to_thread(write_anonymized, self.blobs, doc, key)
        try:
            await asyncio.to_thread(association.send_file, path)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def transfers_of(self, study_uid: str) -> list[dict[str, Any]]:
        """Every transfer of the study with its state, folded from the event store."""
        cursor = self.store.events.find(
            {"aggregate_type": "Transfer", "payload.study_uid": study_uid}
        ).sort([("aggregate_id", 1), ("aggregate_version", 1)])
        streams: dict[str, list[EventEnvelope]] = defaultdict(list)
        async for doc in cursor:
            streams[doc["aggregate_id"]].append(from_document(doc))
        out = []
        for transfer_id, envelopes in streams.items():
            transfer = Transfer.rehydrate(transfer_id, envelopes)
            destination = await self.directory.get(transfer.destination_id) or {}
            out.append(
                {
                    "transfer_id": transfer_id,
                    "destination_kind": transfer.destination_kind,
                    "destination_id": transfer.destination_id,
                    "destination_name": destination.get("name"),
                    "state": transfer.state,
                    "attempts": transfer.attempts,
                    "rounds": transfer.round,
                    "last_error": transfer.last_error,
                    "requested_by": transfer.requested_by,
                    "anonymized": transfer.anonymous_number is not None,
                    "requested_at": envelopes[0].occurred_at,
                    "updated_at": envelopes[-1].occurred_at,
                }
            )
        out.sort(key=lambda t: t["requested_at"], reverse=True)
        return out


def write_anonymized(blobs: BlobStore, doc: dict[str, Any], key: AnonymizationKey) -> Path:
    """The anonymized copy of a stored instance in a temporary file (delete it). Blocking."""
    fd, name = tempfile.mkstemp(prefix="anonymized-", suffix=".dcm")
    try:
        with os.fdopen(fd, "wb") as out, opened(blobs, doc["path"]) as source:
            for chunk in anonymized_chunks(source, key, message=doc.get("kind") == "message"):
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)
