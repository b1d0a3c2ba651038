"""Receiving DICOM: one upload (a STOW-RS request or a C-STORE association) at a time.

Each object is parsed, written to disk as received, and indexed; per study of the upload one
event is appended: `StudyReceived` for a study never seen, else `StudyInstancesAdded`. The index
writes and the events of one batch go in one MongoDB transaction (three bulk writes plus one
`insert_many` of events), so the write rate stays far below SecantusDB's ~700 writes/s even for
large studies. Sending the same instance again stores nothing new; sending a known SOP
Instance UID with other content is refused (`InstanceAlreadyStored`): a stored instance is
never replaced. A series belongs to one study: an instance naming the Series Instance UID of
another study is refused. STOW-RS parts arrive as spool objects of the blob store
(`Spooled`), C-STORE objects as files (`parse_file`); both are parsed with their pixel data
left where it is. All that is read of an object is read while it is parsed: whatever fails
there fails that object only (0xC000), never the upload.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.filereader import _read_file_meta_info, read_preamble  # pinned pydicom 3.0
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.eventstore import (
    EventStore,
    envelope_for,
    from_document,
)
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.unit_of_work import MongoUnitOfWork, transient
from studyshare.study_store.adapters.blobstore import BlobStore, Spooled, digest_of, opened
from studyshare.study_store.adapters.instances import InstanceIndex
from studyshare.study_store.domain import admission
from studyshare.study_store.domain.dicom_meta import (
    SERIES_TAGS,
    STUDY_TAGS,
    InstanceFacts,
    NotAnInstance,
    facts,
    initials,
    instance_json,
    json_value,
    subset_json,
)
from studyshare.study_store.domain.exceptions import InstanceAlreadyStored
from studyshare.study_store.domain.study import ReceivedBatch, Study

log = get_logger(__name__)

Via = Literal["stow-rs", "c-store", "message"]
#: whether no upload may take a study UID
Reserved = Callable[[str], Awaitable[bool]]
ExtraEvents = Callable[[AsyncClientSession], Awaitable[Sequence[EventEnvelope]]]

# PS3.4 / PS3.18 failure reasons
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
STUDY_MISMATCH = 0xA900  # the object does not belong to the study of the request
OUT_OF_RESOURCES = 0xA700
NOT_AUTHORIZED = 0x0124  # the study (or series) exists and is not the uploader's to add to
SERIES_OF_ANOTHER_STUDY = "the series belongs to another study"


@dataclass(frozen=True)
class Upload:
    """Who uploads, for which department, and the batch that groups "uploaded together"."""

    via: Via
    actor: Actor
    department_id: str | None = None
    owner_id: str | None = None
    batch_id: str = field(default_factory=lambda: new_id("bat"))


@dataclass
class Parsed:
    """What the store keeps of a parsed object (not its dataset: nothing reads it later)."""

    data: bytes | None
    """The object's bytes, or None when it is spooled (`source`) or in a file."""
    facts: InstanceFacts
    transfer_syntax: str
    meta: dict[str, Any]
    sha256: str = ""
    size: int = 0
    source: Spooled | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one received object (the STOW-RS response lists these)."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_uid: str | None
    series_uid: str | None
    failure: int | None = None
    detail: str = ""
    already_stored: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None

    @classmethod
    def refused(cls, f: InstanceFacts, failure: int, detail: str) -> Outcome:
        return cls(f.sop_class_uid, f.sop_instance_uid, f.study_uid, f.series_uid, failure, detail)


@dataclass(frozen=True)
class Indexed:
    """What a batch's transaction found: the instances already stored, and those it refused
    because their series belongs to another study (indexed since the upload looked)."""

    known: set[str] = field(default_factory=set)
    series_of_another_study: set[str] = field(default_factory=set)


#: elements larger than this are not read while parsing (the pixel data of a spooled object)
DEFER_BYTES = 64 * 1024
PIXEL_DATA = 0x7FE00010


def parse(data: bytes) -> Parsed:
    """A Part 10 object, or NotAnInstance / InvalidDicomError."""
    source = io.BytesIO(data)
    _check_file_meta(source)
    return _parsed(dcmread(source), data=data, sha256=digest_of(data), size=len(data))


def parse_spooled(spooled: Spooled, blobs: BlobStore) -> Parsed:
    """A Part 10 object in the blob store's spool; its large elements are not read. Blocking:
    call from a worker thread."""
    with blobs.open_spooled(spooled) as source:
        _check_file_meta(source)
        ds = dcmread(source, defer_size=DEFER_BYTES)
        return _parsed(ds, data=None, sha256=spooled.sha256, size=spooled.size, source=spooled)


def _check_file_meta(source: BinaryIO) -> None:
    """The transfer syntax is one the store takes, read from the file meta information alone,
    before the data set (a deflated one would be inflated whole as it is read). The C-STORE
    receiver needs no such look: it negotiates only those transfer syntaxes."""
    start = source.tell()
    if read_preamble(source, False) is not None:
        ts = str(_read_file_meta_info(source).get("TransferSyntaxUID", "") or "")
        admission.check_transfer_syntax(ts)
    source.seek(start)


def parse_file(path: Path | BinaryIO, sha256: str, size: int) -> Parsed:
    """A Part 10 file (a received C-STORE object on local disk, or an open stored one); its
    large elements are not read. Blocking."""
    ds = dcmread(path, defer_size=DEFER_BYTES)
    return _parsed(ds, data=None, sha256=sha256, size=size)


def parse_stored(blobs: BlobStore, key: str, sha256: str, size: int) -> Parsed:
    """An object in the blob store under `key`. Blocking: call from a worker thread."""
    with opened(blobs, key) as source:
        return parse_file(source, sha256, size)


def _parsed(
    ds: Dataset, data: bytes | None, sha256: str, size: int, source: Spooled | None = None
) -> Parsed:
    ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    if not ts:
        raise NotAnInstance("the file meta information has no transfer syntax")
    admission.check_transfer_syntax(ts)
    admission.check_frames(ds, ts, _pixel_data_length(ds))
    return Parsed(
        data=data,
        facts=facts(ds),
        transfer_syntax=ts,
        meta=instance_json(ds),
        sha256=sha256,
        size=size,
        source=source,
    )


def _pixel_data_length(ds: Dataset) -> int | None:
    """The pixel data's length as stored (a deferred element is not read for it); None when
    there is none, or its length is undefined (encapsulated)."""
    if PIXEL_DATA not in ds:
        return None
    element = ds.get_item(PIXEL_DATA, keep_deferred=True)
    if isinstance(element, RawDataElement):
        length = element.length
    else:
        length = len(element.value) if element.value is not None else 0xFFFFFFFF
    return None if length == 0xFFFFFFFF else length


def _retryable(exc: BaseException) -> bool:
    """Another upload won: a version or instance taken, or a transaction write conflict."""
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        return all(e.get("code") == 11000 for e in exc.details.get("writeErrors", []))
    return transient(exc)


def _parse_all(objects: Sequence[bytes | Spooled], blobs: BlobStore) -> list[Parsed | str]:
    """Parse each object; a string says why one is not a storable instance. Blocking."""
    out: list[Parsed | str] = []
    for data in objects:
        try:
            out.append(parse_spooled(data, blobs) if isinstance(data, Spooled) else parse(data))
        except Exception as exc:  # an unknown VR, sequences nested too deep, ...: this one fails
            out.append(str(exc)[:200] or type(exc).__name__)
    return out


def claim_series(
    parsed: Sequence[Parsed], owners: dict[str, str]
) -> tuple[list[Parsed], list[Parsed]]:
    """Split `parsed` into the instances of a series of their own study and those whose
    Series Instance UID belongs to another study: by `owners` (series -> study, as indexed),
    else to the study of its first instance in `parsed`."""
    claimed = dict(owners)
    own: list[Parsed] = []
    others: list[Parsed] = []
    for p in parsed:
        f = p.facts
        (own if claimed.setdefault(f.series_uid, f.study_uid) == f.study_uid else others).append(p)
    return own, others


def instance_kind(f: InstanceFacts) -> str:
    return "report" if f.is_report else "image"


def instance_document(
    parsed: Parsed, path: str, upload: Upload, kind: str, bucket_id: str | None = None
) -> dict[str, Any]:
    f = parsed.facts
    return {
        "_id": f.sop_instance_uid,
        "study_uid": f.study_uid,
        "series_uid": f.series_uid,
        "sop_class_uid": f.sop_class_uid,
        "instance_number": f.instance_number,
        "kind": kind,
        "bucket_id": bucket_id,
        "path": path,
        "size": parsed.size,
        "sha256": parsed.sha256,
        "transfer_syntax": parsed.transfer_syntax,
        "frames": f.number_of_frames,
        "rows": f.rows,
        "columns": f.columns,
        "has_pixels": f.has_pixels,
        "burned_in": f.burned_in,
        "batch_id": upload.batch_id,
        "received_at": datetime.now(UTC),
        "meta": parsed.meta,
    }


def series_document(parsed: Parsed, kind: str, bucket_id: str | None = None) -> dict[str, Any]:
    f = parsed.facts
    return {
        "_id": f.series_uid,
        "study_uid": f.study_uid,
        "modality": f.modality,
        "series_number": f.series_number,
        "kind": kind,
        "bucket_id": bucket_id,
        "meta": subset_json(parsed.meta, SERIES_TAGS),
    }


def study_documents(
    first: Parsed, upload: Upload, new: list[Parsed], new_series: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    f = first.facts
    on_insert = {
        "_id": f.study_uid,
        "department_id": upload.department_id,
        "owner_id": upload.owner_id,
        "received_via": upload.via,
        "received_at": datetime.now(UTC),
        "patient_id": f.patient_id,
        "patient_name": f.patient_name,
        "study_date": str(json_value(first.meta, "StudyDate") or ""),
        "accession_number": f.accession_number,
        "description": f.study_description,
        "meta": subset_json(first.meta, STUDY_TAGS),
    }
    update: dict[str, Any] = {
        "$inc": {"instance_count": len(new), "series_count": new_series},
        "$addToSet": {"modalities": {"$each": sorted({p.facts.modality for p in new})}},
    }
    if upload.via != "message":
        update["$addToSet"]["upload_batch_ids"] = upload.batch_id
    return on_insert, update


async def load_studies(
    store: EventStore, study_uids: Sequence[str], session: AsyncClientSession | None
) -> dict[str, Study]:
    """Rehydrate several studies with one query."""
    streams: dict[str, list[EventEnvelope]] = defaultdict(list)
    cursor = store.events.find({"aggregate_id": {"$in": list(study_uids)}}, session=session).sort(
        [("aggregate_id", 1), ("aggregate_version", 1)]
    )
    async for doc in cursor:
        streams[doc["aggregate_id"]].append(from_document(doc))
    return {uid: Study.rehydrate(uid, streams.get(uid, [])) for uid in study_uids}


class Ingest:
    """Stores uploads: blobs first, then index and events in one transaction."""

    def __init__(
        self,
        db: AsyncDatabase,
        blobs: BlobStore,
        on_indexed: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.index = InstanceIndex(db)
        self.store = EventStore(db)
        #: told each study uid whose instances a batch indexed (after its transaction ended)
        self.on_indexed = on_indexed

    async def ensure_indexes(self) -> None:
        await self.store.ensure_indexes()
        await self.index.ensure_indexes()
        await self.blobs.setup()

    async def receive(
        self,
        upload: Upload,
        objects: Sequence[bytes | Spooled],
        expect_study: str | None = None,
        owner_check: bool = True,
        reserved: Reserved | None = None,
    ) -> list[Outcome]:
        """Parse, store and index a batch of Part 10 objects; one outcome per object.

        `reserved(study_uid)` says a study UID no upload may take (the UID an anonymized share
        shows a study under: a study of that UID would stand in for the share's).

        With `owner_check`, instances of a study already stored for another department and
        another owner are refused: nobody can slip objects into someone else's study. An
        instance whose series belongs to another study is refused, whoever owns either. A known
        SOP Instance UID with other content refuses the whole batch (`InstanceAlreadyStored`,
        nothing stored).
        """
        outcomes: list[Outcome] = []
        candidates: list[Parsed] = []
        started = time.perf_counter()
        for item in await asyncio.to_thread(_parse_all, objects, self.blobs):
            if isinstance(item, str):
                outcomes.append(Outcome(None, None, None, None, CANNOT_UNDERSTAND, item))
            elif expect_study is not None and item.facts.study_uid != expect_study:
                outcomes.append(
                    Outcome.refused(
                        item.facts, STUDY_MISMATCH, "the instance belongs to another study"
                    )
                )
            else:
                candidates.append(item)
        if reserved is not None:
            taken = {u for u in {p.facts.study_uid for p in candidates} if await reserved(u)}
            outcomes += [
                Outcome.refused(p.facts, NOT_AUTHORIZED, "the study UID is an anonymized share's")
                for p in candidates
                if p.facts.study_uid in taken
            ]
            candidates = [p for p in candidates if p.facts.study_uid not in taken]
        foreign = await self.foreign_studies(upload, candidates) if owner_check else set()
        accepted = []
        for parsed in candidates:
            if parsed.facts.study_uid in foreign:
                outcomes.append(
                    Outcome.refused(
                        parsed.facts, NOT_AUTHORIZED, "the study belongs to another department"
                    )
                )
            else:
                accepted.append(parsed)
        owners = await self.index.series_studies({p.facts.series_uid for p in accepted})
        accepted, others = claim_series(accepted, owners)
        outcomes += [
            Outcome.refused(p.facts, NOT_AUTHORIZED, SERIES_OF_ANOTHER_STUDY) for p in others
        ]
        stored = await self.refuse_replacements(accepted)
        parsed_at = time.perf_counter()
        new = [p for p in accepted if p.facts.sop_instance_uid not in stored]
        paths = await self._store_blobs(new)
        written_at = time.perf_counter()
        try:
            indexed = await self.index_batch(upload, new, paths)
        except InstanceAlreadyStored:
            # another upload indexed other content first: our objects (named by their digest,
            # so never the winner's) go
            for path in paths.values():
                await self.blobs.remove(path)
            raise
        log.info(
            "dicom.upload_timing",
            batch_id=upload.batch_id,
            objects=len(objects),
            parse_ms=round((parsed_at - started) * 1000),
            write_ms=round((written_at - parsed_at) * 1000),
            index_ms=round((time.perf_counter() - written_at) * 1000),
        )
        known = stored | indexed.known
        for parsed in accepted:
            f = parsed.facts
            if f.sop_instance_uid in indexed.series_of_another_study:
                outcomes.append(Outcome.refused(f, NOT_AUTHORIZED, SERIES_OF_ANOTHER_STUDY))
                continue
            outcomes.append(
                Outcome(
                    f.sop_class_uid,
                    f.sop_instance_uid,
                    f.study_uid,
                    f.series_uid,
                    already_stored=f.sop_instance_uid in known,
                )
            )
        return outcomes

    async def foreign_studies(self, upload: Upload, parsed: Sequence[Parsed]) -> set[str]:
        uids = list({p.facts.study_uid for p in parsed})
        if not uids:
            return set()
        cursor = self.index.studies.find(
            {"_id": {"$in": uids}}, {"department_id": 1, "owner_id": 1}
        )
        return {
            doc["_id"]
            async for doc in cursor
            if not (
                (doc.get("department_id") and doc["department_id"] == upload.department_id)
                or (doc.get("owner_id") and doc["owner_id"] == upload.owner_id)
            )
        }

    async def stored_digests(
        self, sop_uids: Sequence[str], session: AsyncClientSession | None = None
    ) -> dict[str, str]:
        """The SHA-256 of each stored instance among `sop_uids` (read from its file for
        instances indexed before digests were kept)."""
        if not sop_uids:
            return {}
        cursor = self.index.instances.find(
            {"_id": {"$in": list(sop_uids)}}, {"sha256": 1, "path": 1}, session=session
        )
        out = {}
        async for doc in cursor:
            out[doc["_id"]] = doc.get("sha256") or await self.blobs.digest(doc["path"])
        return out

    async def refuse_replacements(self, parsed: Sequence[Parsed]) -> set[str]:
        """A stored instance is never replaced: a known SOP Instance UID (or one twice in the
        batch) with other content refuses the batch. Returns those already stored as sent."""
        digests: dict[str, str] = {}
        clashes = set()
        for p in parsed:
            uid = p.facts.sop_instance_uid
            if digests.setdefault(uid, p.sha256) != p.sha256:
                clashes.add(uid)
        stored = await self.stored_digests(list(digests))
        clashes |= {uid for uid, digest in stored.items() if digests[uid] != digest}
        if clashes:
            log.warning("dicom.instance_already_stored", instances=sorted(clashes)[:20])
            raise InstanceAlreadyStored(
                f"{len(clashes)} instance(s) already stored with other content (a stored "
                f"instance is never replaced; give a new SOP Instance UID): "
                f"{', '.join(sorted(clashes)[:5])}"
            )
        return set(stored)

    async def _store_blobs(self, parsed: Sequence[Parsed]) -> dict[str, str]:
        """Store the objects, a few at a time (the write latencies overlap): spooled ones
        are placed under their key, the others written. SOP instance UID -> key."""
        gate = asyncio.Semaphore(8)

        async def store(p: Parsed) -> tuple[str, str]:
            f = p.facts
            async with gate:
                if p.source is not None:
                    key = await self.blobs.place(
                        p.source, f.study_uid, f.series_uid, f.sop_instance_uid
                    )
                else:
                    assert p.data is not None
                    key = await self.blobs.write(
                        f.study_uid, f.series_uid, f.sop_instance_uid, p.data
                    )
            return f.sop_instance_uid, key

        return dict(await asyncio.gather(*(store(p) for p in parsed)))

    async def index_batch(
        self,
        upload: Upload,
        parsed: Sequence[Parsed],
        paths: dict[str, str],
        kind: str | None = None,
        bucket_id: str | None = None,
        extra_events: ExtraEvents | None = None,
    ) -> Indexed:
        """Index the new instances and append the study events. Retries the whole transaction
        when a concurrent upload won; an instance whose series it finds in another study is
        not indexed and its object removed.

        `extra_events(session)` decides further events inside the same transaction."""
        if not parsed and extra_events is None:
            return Indexed()

        async def in_transaction(session: AsyncClientSession) -> Indexed:
            return await self._index(session, upload, parsed, paths, kind, bucket_id, extra_events)

        try:
            indexed = await MongoUnitOfWork(self.db.client).run(in_transaction, retry_if=_retryable)
            for sop_uid in indexed.series_of_another_study:
                await self.blobs.remove(paths[sop_uid])
            return indexed
        finally:
            if self.on_indexed is not None:
                for study_uid in {p.facts.study_uid for p in parsed}:
                    self.on_indexed(study_uid)

    async def _index(
        self,
        session: AsyncClientSession,
        upload: Upload,
        parsed: Sequence[Parsed],
        paths: dict[str, str],
        kind: str | None,
        bucket_id: str | None,
        extra_events: ExtraEvents | None,
    ) -> Indexed:
        unique = {p.facts.sop_instance_uid: p for p in parsed}
        known = await self.index.known_instances(unique, session)
        other = [  # (a share message is written by the study store itself, once per bucket)
            uid
            for uid, digest in (await self.index.digests(known, session)).items()
            if digest and digest != unique[uid].sha256 and upload.via != "message"
        ]
        if other:  # a concurrent upload indexed other content since `refuse_replacements`
            raise InstanceAlreadyStored(f"already stored with other content: {other[:5]}")
        new = [p for uid, p in unique.items() if uid not in known]
        known_series = await self.index.series_studies({p.facts.series_uid for p in new}, session)
        new, others = claim_series(new, known_series)  # a concurrent upload's, since it looked
        if others:
            log.warning(
                "dicom.series_of_another_study",
                batch_id=upload.batch_id,
                instances=[p.facts.sop_instance_uid for p in others][:20],
            )
        by_study: dict[str, list[Parsed]] = defaultdict(list)
        for p in new:
            by_study[p.facts.study_uid].append(p)

        instance_docs = [
            instance_document(
                p,
                paths[p.facts.sop_instance_uid],
                upload,
                kind or instance_kind(p.facts),
                bucket_id,
            )
            for p in new
        ]
        counts: dict[str, int] = defaultdict(int)
        first_of_series: dict[str, Parsed] = {}
        for p in new:
            counts[p.facts.series_uid] += 1
            first_of_series.setdefault(p.facts.series_uid, p)
        series_docs = [
            (series_document(p, kind or instance_kind(p.facts), bucket_id), counts[uid])
            for uid, p in first_of_series.items()
        ]
        study_docs = []
        for items in by_study.values():
            new_series = len({p.facts.series_uid for p in items} - known_series.keys())
            study_docs.append(study_documents(items[0], upload, items, new_series))
        await self.index.add(instance_docs, series_docs, study_docs, session)

        envelopes = list(await extra_events(session)) if extra_events else []
        if upload.via != "message" and by_study:
            studies = await load_studies(self.store, list(by_study), session)
            for study_uid, items in by_study.items():
                study = studies[study_uid]
                for i, event in enumerate(study.receive(self._batch(upload, items))):
                    envelopes.append(
                        envelope_for(
                            event,
                            aggregate_id=study_uid,
                            aggregate_version=study.version + i + 1,
                            actor=upload.actor,
                        )
                    )
        await self.store.append(envelopes, session=session)
        if new:
            log.info(
                "dicom.received",
                via=upload.via,
                batch_id=upload.batch_id,
                studies=len(by_study),
                instances=len(new),
                already_stored=len(known),
            )
        return Indexed(known, {p.facts.sop_instance_uid for p in others})

    @staticmethod
    def _batch(upload: Upload, items: list[Parsed]) -> ReceivedBatch:
        first = items[0].facts
        return ReceivedBatch(
            study_uid=first.study_uid,
            series_uids=tuple(sorted({p.facts.series_uid for p in items})),
            instance_count=len(items),
            department_id=upload.department_id,
            owner_id=upload.owner_id,
            upload_batch_id=upload.batch_id,
            received_via=upload.via,
            patient_id=first.patient_id or None,
            patient_initials=initials(first.patient_name),
            patient_birth_date=first.patient_birth_date,
            description=first.study_description,
            study_date=first.study_date,
            accession_number=first.accession_number,
            modalities=tuple(sorted({p.facts.modality for p in items})),
        )
