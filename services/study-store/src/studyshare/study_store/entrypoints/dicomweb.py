"""DICOMweb: STOW-RS (store), QIDO-RS (search) and WADO-RS (retrieve) under `/dicomweb`.

Every study route is guarded by the caller's `AccessDecision` (`ReaderStudyAccess`): no
images, no answer. What is served depends on it: report-bearing objects (SR, encapsulated
PDF/CDA) only with report access and never on anonymized shares; a share message series only to
its bucket's recipients and the study's own department; on anonymized shares every object and
every JSON answer is rewritten on the way out (`domain.anonymize`), the stored objects stay as
received, and objects with burned-in annotations (a name may be in the pixels) are not served
at all. The read routes also take the image viewer's viewer token (`domain.viewer`): one
study, through one grant, decided by the access model on every request. Each retrieval is
registered with `app.state.access_log.record(decision, principal, action)`.

What these routes need from the rest of the study store (the access half):
- the app's lifespan calls `await install_dicom(app, db, settings)` once;
- `app.state.access_model.decide(principal, study_uid) -> AccessDecision` (via
  `ReaderStudyAccess`);
- `app.state.access_model.visible_studies(principal) -> Iterable[str]`: the study UIDs the
  caller may open (QIDO-RS searches only those, then asks `decide` for each);
- `app.state.access_log.record(decision, principal, action)` (sync or async), action one of
  view | metadata | instances | rendered | download | forward.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import io
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydicom import Dataset, dcmread
from pymongo.asynchronous.database import AsyncDatabase
from starlette.concurrency import iterate_in_threadpool

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import CurrentUser
from studyshare.plumbing.errors import Forbidden, NotFound, RuleViolation
from studyshare.plumbing.hot import HotHandler, HotRoute
from studyshare.plumbing.http import problem_responses
from studyshare.plumbing.logging import get_logger
from studyshare.study_store.adapters.blobstore import BlobStore, SpoolSink, blob_store, opened
from studyshare.study_store.adapters.dicom_files import (
    Frame,
    NoPixelData,
    NoSuchFrame,
    anonymized_chunks,
    frame_count,
    locate_pixel_data,
)
from studyshare.study_store.adapters.dicom_files import read_frames as read_stored_frames
from studyshare.study_store.adapters.instance_cache import StudyInstances
from studyshare.study_store.adapters.instances import InstanceIndex
from studyshare.study_store.adapters.multipart import MultipartError, MultipartSpooler
from studyshare.study_store.adapters.viewer_tokens import ViewerTokens
from studyshare.study_store.domain.access_rules import AccessDecisionsUnavailable
from studyshare.study_store.domain.anonymize import (
    AnonymizationKey,
    anonymize_json,
    may_carry_burned_in_text,
)
from studyshare.study_store.domain.dicom_meta import json_set, json_value, tag_key
from studyshare.study_store.entrypoints.anonymized_uids import real_study_uids
from studyshare.study_store.entrypoints.dependencies import (
    DicomReader,
    ReaderStudyAccess,
    dicom_reader,
    study_access,
)
from studyshare.study_store.service_layer.ingest import Ingest, Outcome, Upload
from studyshare.study_store.settings import StudyStoreSettings

log = get_logger(__name__)

DICOM_JSON = "application/dicom+json"
OWNING_PATHS = {"department", "owner", "service_desk", "break_the_glass"}
ANY_JSON: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
#: WADO-RS answers up to this many bytes of instances from memory, larger ones are streamed
INLINE_BYTES = 1024 * 1024


# --- state -------------------------------------------------------------------------------


@dataclass
class DicomStores:
    db: AsyncDatabase
    settings: StudyStoreSettings
    blobs: BlobStore
    index: InstanceIndex
    ingest: Ingest
    instances: StudyInstances


async def install_dicom(
    app: FastAPI, db: AsyncDatabase, settings: StudyStoreSettings
) -> DicomStores:
    """Create the DICOM stores on `app.state.dicom` (call from the app's lifespan)."""
    blobs = blob_store(settings, db)
    index = InstanceIndex(db)
    instances = StudyInstances(index, study_version(app), ttl_s=settings.instance_cache_ttl_s)
    ingest = Ingest(db, blobs, on_indexed=instances.forget)
    stores = DicomStores(db, settings, blobs, index, ingest, instances)
    await stores.ingest.ensure_indexes()
    await stores.db["events"].create_index(
        [("aggregate_type", 1), ("payload.study_uid", 1)], name="by_study"
    )
    app.state.dicom = stores
    app.state.viewer_tokens = ViewerTokens(
        settings.viewer_token_secret, settings.viewer_token_ttl_s
    )
    return stores


def study_version(app: FastAPI) -> Callable[[str], Hashable]:
    """The access model's copy of a study changes with every batch of instances stored."""

    def version(study_uid: str) -> Hashable:
        studies = getattr(getattr(app.state, "access_model", None), "studies", None)
        study = studies.get(study_uid) if studies is not None else None
        return None if study is None else (study.get("seq"), study.get("instance_count"))

    return version


async def dicom_stores(request: Request) -> DicomStores:
    return request.app.state.dicom


Stores = Annotated[DicomStores, Depends(dicom_stores)]


# --- refusals ----------------------------------------------------------------------------


class NoAccessToStudy(Forbidden):
    """The caller holds no grant, group, reference number or department access to the study."""


class ObjectNotFound(NotFound):
    """No such study, series, instance or frame (or not one the caller may see)."""


class NotRenderable(RuleViolation):
    """The object has no pixel data the store can render."""

    status = 406
    title = "Not acceptable"


class UnsupportedMediaType(RuleViolation):
    """STOW-RS takes multipart/related; type="application/dicom" only."""

    status = 415
    title = "Unsupported media type"


class UploadTooLarge(RuleViolation):
    status = 413
    title = "Payload too large"


class DepartmentNotYours(Forbidden):
    """An upload can only be filed under one of the uploader's own departments."""


# --- access helpers ----------------------------------------------------------------------


def require_images(decision: AccessDecision) -> AccessDecision:
    if not decision.images:
        raise NoAccessToStudy(f"no access to study {decision.study_uid}")
    return decision


def may_see(doc: dict[str, Any], decision: AccessDecision) -> bool:
    """Whether an instance or series document is served under this decision."""
    kind = doc.get("kind", "image")
    if decision.anonymized and may_carry_burned_in_text(doc):
        return False  # the patient's name may be written in the pixels
    if kind == "report":
        return decision.report != "none" and not decision.anonymized
    if kind == "message":
        return (decision.bucket_id is not None and decision.bucket_id == doc.get("bucket_id")) or (
            decision.via in OWNING_PATHS
        )
    return True


def anonymization(
    decision: AccessDecision, settings: StudyStoreSettings, patient_id: str | None
) -> AnonymizationKey | None:
    if not decision.anonymized:
        return None
    return AnonymizationKey.for_share(
        settings.anonymization_secret,
        decision.bucket_id or "",
        decision.anonymous_number or "0",
        patient_id,
    )


async def record_access(
    request: Request, decision: AccessDecision, principal: AccessClaims, action: str
) -> None:
    """Register the access for the study logging (the access log coalesces)."""
    recorder = getattr(request.app.state, "access_log", None)
    if recorder is None:
        log.warning("access_log.missing", action=action)
        return
    result = recorder.record(decision, principal, action)
    if inspect.isawaitable(result):
        await result


#: a host (and port) as the gateway or the Ingress controller forwards it
FORWARDED_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def base_url(request: Request) -> str:
    """Where the caller reached the store: the gateway's (or the Ingress controller's)
    `X-Forwarded-Host` and `-Proto` when given, else the request's own. URLs in answers
    (RetrieveURL, BulkDataURI) are built on it, so a browser behind the gateway can follow
    them."""
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    if host and FORWARDED_HOST.match(host) and proto in ("http", "https"):
        return f"{proto}://{host}"
    return str(request.base_url).rstrip("/")


# --- serving objects ---------------------------------------------------------------------


async def served_bytes(
    stores: DicomStores, doc: dict[str, Any], key: AnonymizationKey | None
) -> AsyncIterator[bytes]:
    """The Part 10 bytes of an instance, a chunk at a time: as stored, or rewritten for an
    anonymized share (read in a worker thread)."""
    if key is None:
        async for chunk in stores.blobs.chunks(doc["path"]):
            yield chunk
        return
    async for chunk in iterate_in_threadpool(anonymized_object(stores.blobs, doc, key)):
        yield chunk


def anonymized_object(
    blobs: BlobStore, doc: dict[str, Any], key: AnonymizationKey
) -> Iterable[bytes]:
    """A stored instance rewritten for an anonymized share, in chunks. Blocking."""
    with opened(blobs, doc["path"]) as source:
        yield from anonymized_chunks(source, key, message=doc.get("kind") == "message")


async def multipart_dicom(
    stores: DicomStores, docs: list[dict[str, Any]], key: AnonymizationKey | None
) -> Response:
    """The instances as multipart/related: small ones (up to `INLINE_BYTES` in all, as
    received) read at once into one body with a length; others streamed a chunk at a time."""
    boundary = secrets.token_hex(16)
    media_type = f'multipart/related; type="application/dicom"; boundary={boundary}'

    def head(doc: dict[str, Any]) -> bytes:
        return (
            f"--{boundary}\r\nContent-Type: application/dicom; "
            f"transfer-syntax={doc.get('transfer_syntax', '')}\r\n\r\n"
        ).encode()

    tail = f"--{boundary}--\r\n".encode()
    if key is None and sum(doc.get("size") or INLINE_BYTES for doc in docs) <= INLINE_BYTES:
        parts = []
        for doc in docs:
            parts += [head(doc), await stores.blobs.read(doc["path"]), b"\r\n"]
        return Response(b"".join([*parts, tail]), media_type=media_type)

    async def body() -> AsyncIterator[bytes]:
        for doc in docs:
            yield head(doc)
            async for chunk in served_bytes(stores, doc, key):
                yield chunk
            yield b"\r\n"
        yield tail

    return StreamingResponse(body(), media_type=media_type)


def multipart_frames(media: str, first: list[Frame], rest: Iterator[Frame] | None) -> Response:
    """Frames as multipart/related: the frames read already (`first`) in one body with a
    length, or followed by the `rest`, streamed (each read in a worker thread)."""
    boundary = secrets.token_hex(16)
    head = f"--{boundary}\r\nContent-Type: {media}\r\n\r\n".encode()
    tail = f"--{boundary}--\r\n".encode()
    media_type = f'multipart/related; type="{media.split(";")[0]}"; boundary={boundary}'
    if rest is None:
        return Response(
            b"".join([*(part for data in first for part in (head, data, b"\r\n")), tail]),
            media_type=media_type,
        )

    async def body() -> AsyncIterator[bytes | memoryview]:
        for data in first:
            yield head
            yield data
            yield b"\r\n"
        async for data in iterate_in_threadpool(rest):
            yield head
            yield data
            yield b"\r\n"
        yield tail

    return StreamingResponse(body(), media_type=media_type)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status_code=status, media_type=DICOM_JSON)


def instance_url(base: str, doc: dict[str, Any]) -> str:
    return (
        f"{base}/dicomweb/studies/{doc['study_uid']}/series/{doc['series_uid']}"
        f"/instances/{doc['_id']}"
    )


def metadata_of(doc: dict[str, Any], base: str, key: AnonymizationKey | None) -> dict[str, Any]:
    data = dict(doc.get("meta") or {})
    if doc.get("has_pixels"):
        frames = ",".join(str(n) for n in range(1, max(doc.get("frames") or 1, 1) + 1))
        data["7FE00010"] = {"vr": "OW", "BulkDataURI": f"{instance_url(base, doc)}/frames/{frames}"}
    json_set(data, "RetrieveURL", "UR", [instance_url(base, doc)])
    return anonymize_json(data, key, message=doc.get("kind") == "message") if key else data


async def visible_instances(
    stores: DicomStores,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[dict[str, Any]]:
    """The instance documents the decision lets the caller see (shared: do not change them)."""
    docs = await stores.instances.instances_of(study_uid, series_uid, sop_uid)
    docs = [d for d in docs if may_see(d, decision)]
    if not docs:
        raise ObjectNotFound("no such object in this study")
    return docs


async def study_key(
    stores: DicomStores, decision: AccessDecision, study_uid: str
) -> AnonymizationKey | None:
    if not decision.anonymized:
        return None
    study = await stores.index.study(study_uid)
    return anonymization(decision, stores.settings, (study or {}).get("patient_id"))


# --- STOW-RS -----------------------------------------------------------------------------

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

STOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every instance stored",
        "content": {DICOM_JSON: {"schema": {"type": "object"}}},
    },
    202: {
        "description": "Some instances failed",
        "content": {DICOM_JSON: {"schema": {"type": "object"}}},
    },
    409: {
        "description": "No instance stored",
        "content": {DICOM_JSON: {"schema": {"type": "object"}}},
    },
    **problem_responses(400, 401, 403, 413, 415),
}


def boundary_of(content_type: str) -> str:
    media_type, *params = [p.strip() for p in content_type.split(";")]
    values = {}
    for param in params:
        name, _, value = param.partition("=")
        values[name.strip().lower()] = value.strip().strip('"')
    if media_type.lower() != "multipart/related":
        raise UnsupportedMediaType("STOW-RS takes multipart/related")
    if values.get("type", "application/dicom").lower() != "application/dicom":
        raise UnsupportedMediaType('only type="application/dicom" parts are accepted')
    if not values.get("boundary"):
        raise UnsupportedMediaType("the multipart body has no boundary")
    return values["boundary"]


def split_multipart(buffer: Any, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """(headers, content) of each part of a multipart body held in `buffer` (bytes or mmap)."""
    delim = b"--" + boundary.encode()
    start = buffer.find(delim)
    if start < 0:
        return []
    pos = start + len(delim)
    parts = []
    while buffer[pos : pos + 2] != b"--":
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            break
        part_start = line_end + 2
        end = buffer.find(b"\r\n" + delim, part_start)
        if end < 0:
            break
        raw = buffer[part_start:end]
        head, sep, content = bytes(raw).partition(b"\r\n\r\n")
        if not sep:
            if raw[:2] == b"\r\n":
                head, content = b"", bytes(raw[2:])
            else:
                head, content = bytes(raw), b""
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip():
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
        pos = end + 2 + len(delim)
    return parts


def stow_response(outcomes: list[Outcome], base: str, study_uid: str | None) -> Response:
    stored, failed = Dataset(), []
    referenced = []
    for outcome in outcomes:
        item = Dataset()
        if outcome.sop_class_uid:
            item.ReferencedSOPClassUID = outcome.sop_class_uid
        if outcome.sop_instance_uid:
            item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
        if outcome.ok:
            item.RetrieveURL = (
                f"{base}/dicomweb/studies/{outcome.study_uid}/series/{outcome.series_uid}"
                f"/instances/{outcome.sop_instance_uid}"
            )
            referenced.append(item)
        else:
            item.FailureReason = outcome.failure
            failed.append(item)
    if study_uid:
        stored.RetrieveURL = f"{base}/dicomweb/studies/{study_uid}"
    if referenced:
        stored.ReferencedSOPSequence = referenced
    if failed:
        stored.FailedSOPSequence = failed
    status = 200 if not failed else (202 if referenced else 409)
    return json_response(stored.to_json_dict(), status)


def upload_for(principal: AccessClaims, department_id: str | None) -> Upload:
    if department_id is not None and department_id not in principal.department_ids:
        raise DepartmentNotYours(f"you are not a member of department {department_id}")
    department = department_id or (
        principal.department_ids[0] if principal.department_ids else None
    )
    return Upload(
        via="stow-rs",
        actor=Actor(kind="user", id=principal.sub, role=(principal.roles or (None,))[0]),
        department_id=department,
        owner_id=principal.sub,
    )


async def receive_stow(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    department_id: str | None,
    study_uid: str | None,
) -> Response:
    boundary = boundary_of(request.headers.get("content-type", ""))
    upload = upload_for(principal, department_id)
    parts: list[tuple[dict[str, str], SpoolSink]] = []

    def open_part(headers: dict[str, str]) -> SpoolSink:
        sink = stores.blobs.spool()
        parts.append((headers, sink))
        return sink

    spooler = MultipartSpooler(boundary, open_part)
    try:
        size = await spool_body(request, spooler, stores.settings.stow_max_bytes)
        if size == 0:
            raise UnsupportedMediaType("the request body is empty")
        try:
            spooler.finish()
        except MultipartError as exc:
            raise UnsupportedMediaType(f"the multipart body is malformed: {exc}") from None
        if not parts:
            raise UnsupportedMediaType("the multipart body holds no part")
        objects = [
            sink.spooled
            for headers, sink in parts
            if sink.spooled is not None
            and headers.get("content-type", "application/dicom").split(";")[0].strip().lower()
            == "application/dicom"
        ]
        skipped = len(parts) - len(objects)
        outcomes = await stores.ingest.receive(
            upload, objects, expect_study=study_uid, owner_check=True
        )
    finally:
        await asyncio.to_thread(lambda: [sink.discard() for _, sink in parts])
    outcomes += [Outcome(None, None, None, None, 0xC000, "not application/dicom")] * skipped
    return stow_response(outcomes, base_url(request), study_uid)


#: the body is handed to the spooler (a thread: it writes files) about this much at a time
SPOOL_FEED_BYTES = 1024 * 1024


async def spool_body(request: Request, spooler: MultipartSpooler, max_bytes: int) -> int:
    """Stream the request body into the spooler's part files; the bytes read."""
    size, pending, pending_size = 0, [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge("the upload is larger than this store accepts")
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= SPOOL_FEED_BYTES:
                await asyncio.to_thread(spooler.feed, b"".join(pending))
                pending, pending_size = [], 0
        if pending:
            await asyncio.to_thread(spooler.feed, b"".join(pending))
    except MultipartError as exc:
        raise UnsupportedMediaType(f"the multipart body is malformed: {exc}") from None
    return size


#: the STOW-RS routes: their request bodies are bounded by `settings.stow_max_bytes`
STOW = (("POST", "/dicomweb/studies"), ("POST", "/dicomweb/studies/{study_uid}"))

STOW_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "/studies",
    summary="STOW-RS: store instances (multipart/related; type=application/dicom)",
    response_class=Response,
    responses=STOW_RESPONSES,
    openapi_extra=STOW_REQUEST_BODY,
)
async def stow(
    request: Request,
    stores: Stores,
    principal: CurrentUser,
    department_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    return await receive_stow(request, stores, principal, department_id, None)


@router.post(
    "/studies/{study_uid}",
    summary="STOW-RS into one study (instances of other studies are refused)",
    response_class=Response,
    responses=STOW_RESPONSES,
    openapi_extra=STOW_REQUEST_BODY,
)
async def stow_study(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: CurrentUser,
    department_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    return await receive_stow(request, stores, principal, department_id, study_uid)


# --- QIDO-RS -----------------------------------------------------------------------------


def date_query(value: str) -> dict[str, str] | str:
    """DICOM date matching: single date or range (`a-b`, `a-`, `-b`)."""
    value = value.replace(".", "")
    if "-" not in value:
        return value
    low, _, high = value.partition("-")
    query = {}
    if low:
        query["$gte"] = low
    if high:
        query["$lte"] = high
    return query


def date_matches(value: str | None, data: dict[str, Any]) -> bool:
    """A StudyDate query against the date an answer shows (an anonymized share's shifted one)."""
    if not value:
        return True
    shown = str(json_value(data, "StudyDate") or "")
    query = date_query(value)
    if isinstance(query, str):
        return shown == query
    return bool(shown) and query.get("$gte", "") <= shown <= query.get("$lte", "99999999")


def matches(pattern: str | None, value: Any) -> bool:
    if not pattern:
        return True
    text = str(value or "")
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(text.lower(), pattern.lower())
    return text.lower() == pattern.lower()


def study_json(
    doc: dict[str, Any],
    base: str,
    key: AnonymizationKey | None,
    series: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The QIDO study answer; with `series` (those the caller may see) the modalities and
    counts are of what the caller can open, so hidden reports do not show through."""
    data = dict(doc.get("meta") or {})
    if series is None:
        modalities = list(doc.get("modalities") or [])
        series_count, instance_count = doc.get("series_count", 0), doc.get("instance_count", 0)
    else:
        modalities = sorted({s.get("modality") or "OT" for s in series})
        series_count = len(series)
        instance_count = sum(s.get("instance_count", 0) for s in series)
    json_set(data, "ModalitiesInStudy", "CS", modalities)
    json_set(data, "NumberOfStudyRelatedSeries", "IS", [series_count])
    json_set(data, "NumberOfStudyRelatedInstances", "IS", [instance_count])
    json_set(data, "RetrieveURL", "UR", [f"{base}/dicomweb/studies/{doc['_id']}"])
    return anonymize_json(data, key) if key else data


def visible_study_uids(request: Request, principal: AccessClaims) -> Iterable[str]:
    """The study UIDs the caller may open, from the access model (503 while it may not
    decide: an empty answer would look like revoked access)."""
    model = request.app.state.access_model
    if not model.fresh:
        raise AccessDecisionsUnavailable("access decisions are temporarily unavailable")
    return model.visible_studies(principal)


@router.get(
    "/studies",
    summary="QIDO-RS: search the studies the caller may open",
    response_class=Response,
    responses={
        200: {"description": "Matching studies", "content": {DICOM_JSON: {"schema": ANY_JSON}}},
        **problem_responses(401, 503),
    },
)
async def search_studies(
    request: Request,
    stores: Stores,
    principal: DicomReader,
    PatientID: Annotated[str | None, Query(max_length=64)] = None,
    PatientName: Annotated[str | None, Query(max_length=128)] = None,
    StudyDate: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9.]*-?[0-9.]*$")] = None,
    ModalitiesInStudy: Annotated[str | None, Query(max_length=64)] = None,
    StudyInstanceUID: Annotated[str | None, Query(max_length=1024)] = None,
    AccessionNumber: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    includefield: Annotated[list[str] | None, Query()] = None,
    fuzzymatching: bool = False,
) -> Response:
    query: dict[str, Any] = {}
    if StudyDate:
        query["study_date"] = date_query(StudyDate)
    wanted_modalities = {m.strip() for m in (ModalitiesInStudy or "").split(",") if m.strip()}
    if wanted_modalities:
        query["modalities"] = {"$in": sorted(wanted_modalities)}
    if AccessionNumber:
        query["accession_number"] = AccessionNumber
    uids = set(visible_study_uids(request, principal))
    if StudyInstanceUID:
        uids &= real_study_uids(request.app.state, StudyInstanceUID.split(","))
    base = base_url(request)
    results: list[dict[str, Any]] = []
    found: list[AccessDecision] = []
    skipped = 0
    async for doc in stores.index.search_studies(uids, query):
        decision = request.app.state.access_model.decide(principal, doc["_id"])
        if not decision.images:
            continue
        key = anonymization(decision, stores.settings, doc.get("patient_id"))
        series = [x for x in await stores.index.series_of(doc["_id"]) if may_see(x, decision)]
        data = study_json(doc, base, key, series)
        # filters match what the caller sees (the pseudonym, shifted dates and no accession
        # number on anonymized shares, no hidden report series)
        if key is not None and (AccessionNumber or not date_matches(StudyDate, data)):
            continue
        if not matches(PatientID, json_value(data, "PatientID")):
            continue
        if not matches(PatientName, json_value(data, "PatientName")):
            continue
        if wanted_modalities and not wanted_modalities & {x.get("modality") for x in series}:
            continue
        if skipped < offset:
            skipped += 1
            continue
        results.append(data)
        found.append(decision)
        if len(results) >= limit:
            break
    # each study returned is registered as searched, stored before the answer leaves
    await asyncio.gather(*(record_access(request, d, principal, "search") for d in found))
    return json_response(results)


@router.get(
    "/studies/{study_uid}/series",
    summary="QIDO-RS: the series of a study",
    response_class=Response,
    responses={
        200: {"description": "Series", "content": {DICOM_JSON: {"schema": ANY_JSON}}},
        **problem_responses(401, 403, 404),
    },
)
async def search_series(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
    Modality: Annotated[str | None, Query(max_length=16)] = None,
    SeriesInstanceUID: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    require_images(decision)
    study = await stores.index.study(study_uid)
    if study is None:
        raise ObjectNotFound(f"study {study_uid} is not in the store")
    key = anonymization(decision, stores.settings, study.get("patient_id"))
    base = base_url(request)
    out = []
    for series in await stores.index.series_of(study_uid):
        if not may_see(series, decision):
            continue
        if Modality and series.get("modality") != Modality:
            continue
        if SeriesInstanceUID and series["_id"] != SeriesInstanceUID:
            continue
        data = {**(study.get("meta") or {}), **(series.get("meta") or {})}
        json_set(data, "NumberOfSeriesRelatedInstances", "IS", [series.get("instance_count", 0)])
        json_set(
            data,
            "RetrieveURL",
            "UR",
            [f"{base}/dicomweb/studies/{study_uid}/series/{series['_id']}"],
        )
        out.append(anonymize_json(data, key) if key else data)
    await record_access(request, decision, principal, "view")
    return json_response(out)


async def _search_instances(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None,
) -> Response:
    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid)
    key = await study_key(stores, decision, study_uid)
    base = base_url(request)
    keep = (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "NumberOfFrames",
        "Modality",
        "PatientName",
        "PatientID",
    )
    keys = {tag_key(k) for k in keep}
    out = []
    for doc in docs:
        data = {k: v for k, v in (doc.get("meta") or {}).items() if k in keys}
        json_set(data, "RetrieveURL", "UR", [instance_url(base, doc)])
        out.append(anonymize_json(data, key) if key else data)
    await record_access(request, decision, principal, "view")
    return json_response(out)


@router.get(
    "/studies/{study_uid}/instances",
    summary="QIDO-RS: the instances of a study",
    response_class=Response,
    responses={
        200: {"description": "Instances", "content": {DICOM_JSON: {"schema": ANY_JSON}}},
        **problem_responses(401, 403, 404),
    },
)
async def search_study_instances(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    return await _search_instances(request, stores, principal, decision, study_uid, None)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances",
    summary="QIDO-RS: the instances of a series",
    response_class=Response,
    responses={
        200: {"description": "Instances", "content": {DICOM_JSON: {"schema": ANY_JSON}}},
        **problem_responses(401, 403, 404),
    },
)
async def search_series_instances(
    study_uid: str,
    series_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    return await _search_instances(request, stores, principal, decision, study_uid, series_uid)


# --- WADO-RS -----------------------------------------------------------------------------

MULTIPART_DICOM = {
    200: {
        "description": "multipart/related; type=application/dicom",
        "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
    },
    **problem_responses(401, 403, 404),
}
METADATA = {
    200: {"description": "DICOM JSON metadata", "content": {DICOM_JSON: {"schema": ANY_JSON}}},
    **problem_responses(401, 403, 404),
}


async def _retrieve(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Response:
    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid, sop_uid)
    key = await study_key(stores, decision, study_uid)
    await record_access(request, decision, principal, "instances")
    return await multipart_dicom(stores, docs, key)


async def _metadata(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Response:
    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid, sop_uid)
    key = await study_key(stores, decision, study_uid)
    base = base_url(request)
    await record_access(request, decision, principal, "metadata")
    if key is not None:
        return json_response([metadata_of(doc, base, key) for doc in docs])
    parts = [
        stores.instances.rendered(
            study_uid,
            ("metadata", base, doc["_id"]),
            lambda doc=doc: json.dumps(metadata_of(doc, base, None)).encode(),
        )
        for doc in docs
    ]
    return Response(b"[" + b", ".join(parts) + b"]", media_type=DICOM_JSON)


@router.get(
    "/studies/{study_uid}",
    summary="WADO-RS: retrieve a study",
    response_class=Response,
    responses=MULTIPART_DICOM,
)
async def retrieve_study(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    return await _retrieve(request, stores, principal, decision, study_uid)


@router.get(
    "/studies/{study_uid}/metadata",
    summary="WADO-RS: study metadata",
    response_class=Response,
    responses=METADATA,
)
async def study_metadata(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    return await _metadata(request, stores, principal, decision, study_uid)


@router.get(
    "/studies/{study_uid}/series/{series_uid}",
    summary="WADO-RS: retrieve a series",
    response_class=Response,
    responses=MULTIPART_DICOM,
)
async def retrieve_series(
    study_uid: str,
    series_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    return await _retrieve(request, stores, principal, decision, study_uid, series_uid)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/metadata",
    summary="WADO-RS: series metadata",
    response_class=Response,
    responses=METADATA,
)
async def series_metadata(
    study_uid: str,
    series_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    return await _metadata(request, stores, principal, decision, study_uid, series_uid)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}",
    summary="WADO-RS: retrieve an instance",
    response_class=Response,
    responses=MULTIPART_DICOM,
)
async def retrieve_instance(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    return await _retrieve(request, stores, principal, decision, study_uid, series_uid, sop_uid)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata",
    summary="WADO-RS: instance metadata",
    response_class=Response,
    responses=METADATA,
)
async def instance_metadata(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    return await _metadata(request, stores, principal, decision, study_uid, series_uid, sop_uid)


# --- hot routes: the same reads without FastAPI's stack (`studyshare.plumbing.hot`) ----------


def _hot(read: Callable[..., Any]) -> HotHandler:
    """A hot handler for `read` (`_retrieve`, `_metadata`): the same token check and access
    decision as the route's dependencies; path parameters arrive in path order."""

    async def handler(request: Request, study_uid: str, **uids: str) -> Response:
        principal = await dicom_reader(request)
        decision = await study_access(study_uid, principal, request)
        stores = request.app.state.dicom
        return await read(request, stores, principal, decision, study_uid, *uids.values())

    return handler


STUDY = "/dicomweb/studies/{study_uid}"
SERIES = STUDY + "/series/{series_uid}"
INSTANCE = SERIES + "/instances/{sop_uid}"
HOT_ROUTES = [
    HotRoute(STUDY, _hot(_retrieve)),
    HotRoute(STUDY + "/metadata", _hot(_metadata)),
    HotRoute(SERIES + "/metadata", _hot(_metadata)),
    HotRoute(INSTANCE + "/metadata", _hot(_metadata)),
    HotRoute(SERIES, _hot(_retrieve)),
    HotRoute(INSTANCE, _hot(_retrieve)),
]


# --- frames and rendered -----------------------------------------------------------------

#: the most frame numbers one WADO-RS frames request may list
MAX_FRAME_LIST = 1000


class FrameListTooLong(RuleViolation):
    """A frames request lists at most `MAX_FRAME_LIST` frame numbers."""

    status = 400
    title = "Bad request"


def frame_numbers(text: str) -> list[int]:
    """The distinct frame numbers asked for, in the order first asked (each served once)."""
    if text.count(",") >= MAX_FRAME_LIST:
        raise FrameListTooLong(f"ask for at most {MAX_FRAME_LIST} frames per request")
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise ObjectNotFound("frame numbers are positive integers") from None
    if not numbers or any(n < 1 for n in numbers):
        raise ObjectNotFound("frame numbers are positive integers")
    return list(dict.fromkeys(numbers))


def read_frames(
    blobs: BlobStore, key: str, numbers: list[int]
) -> tuple[str, list[Frame], Iterator[Frame] | None]:
    """Frames of a stored instance, read piecewise (`adapters.dicom_files`): their media type,
    the frames read up to `INLINE_BYTES` (all of them, for most requests), and an iterator
    reading the others one at a time (it closes the object when done). Blocking."""
    source = blobs.open(key)
    try:
        media, frames = read_stored_frames(source, numbers)
        first: list[Frame] = []
        size = 0
        for data in frames:
            first.append(data)
            size += len(data)
            if size > INLINE_BYTES:
                return media, first, _closing(frames, source)
    except NoPixelData as exc:
        source.close()
        raise NotRenderable(str(exc)) from None
    except NoSuchFrame as exc:
        source.close()
        raise ObjectNotFound(str(exc)) from None
    except BaseException:
        source.close()
        raise
    source.close()
    return media, first, None


def _closing(frames: Iterator[Frame], source: Any) -> Iterator[Frame]:
    try:
        yield from frames
    finally:
        source.close()


def _render(
    blobs: BlobStore,
    key: str,
    frame: int,
    media: Literal["image/png", "image/jpeg"],
    window: tuple[float, float] | None,
    quality: int,
    viewport: tuple[int, int] | None = None,
) -> bytes:
    """One frame as an 8-bit PNG/JPEG: modality LUT, then VOI (window) LUT, then scaling.
    Only that frame's pixel data is read and decoded."""
    from PIL import Image
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

    with opened(blobs, key) as source:
        arr, ds = _frame_array(source, frame)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        if photometric.startswith("YBR") and not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            arr = convert_color_space(arr, photometric, "RGB")
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    else:
        values = apply_modality_lut(arr, ds).astype(np.float64)
        if window is not None:
            center, width = window
            low, high = center - width / 2, center + width / 2
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            values = apply_voi_lut(values, ds).astype(np.float64)
            low, high = float(values.min()), float(values.max())
        else:
            low, high = float(values.min()), float(values.max())
        scaled = (np.clip(values, low, high) - low) / max(high - low, 1e-9) * 255.0
        if photometric == "MONOCHROME1":
            scaled = 255.0 - scaled
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if viewport is not None:
        image.thumbnail(viewport)
    out = io.BytesIO()
    if media == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _frame_array(source: Any, frame: int) -> tuple[np.ndarray, Dataset]:
    """One frame (1-based) decoded, and the data set before the pixel data."""
    from pydicom.pixels import pixel_array

    pixels = locate_pixel_data(source)
    if pixels is None:  # no pixel data, or not readable piecewise: the object whole
        source.seek(0)
        ds = dcmread(source)
        if "PixelData" not in ds:
            raise NotRenderable("the object has no pixel data")
        count = frame_count(ds)
        if frame > count or frame < 1:
            raise ObjectNotFound(f"the instance has {count} frame(s)")
        whole = _decoded(lambda: ds.pixel_array)
        return (whole[frame - 1] if count > 1 else whole), ds
    ds = pixels.header
    count = frame_count(ds)
    if frame > count or frame < 1:
        raise ObjectNotFound(f"the instance has {count} frame(s)")
    source.seek(0)
    return _decoded(lambda: pixel_array(source, index=frame - 1)), ds


def _decoded(decode: Callable[[], np.ndarray]) -> np.ndarray:
    try:
        return decode()
    except Exception as exc:
        raise NotRenderable(f"the pixel data cannot be decoded here: {exc}") from exc


def render(
    blobs: BlobStore,
    key: str,
    frame: int,
    media: Literal["image/png", "image/jpeg"],
    window: tuple[float, float] | None,
    quality: int,
    viewport: tuple[int, int] | None = None,
) -> bytes:
    """`_render`, with any decoding trouble answered as NotRenderable (never a 500)."""
    try:
        return _render(blobs, key, frame, media, window, quality, viewport)
    except RuleViolation:
        raise
    except Exception as exc:
        raise NotRenderable(f"the object cannot be rendered: {type(exc).__name__}") from exc


def rendered_media(request: Request) -> Literal["image/png", "image/jpeg"]:
    accept = request.headers.get("accept", "")
    return "image/png" if "image/png" in accept else "image/jpeg"


def parse_window(window: str | None) -> tuple[float, float] | None:
    """`center,width[,function]` (the pattern of the query checks the form)."""
    if not window:
        return None
    center, width = (float(v) for v in window.split(",")[:2])
    return center, max(width, 1.0)


async def _one_instance(
    stores: DicomStores, decision: AccessDecision, study_uid: str, series_uid: str, sop_uid: str
) -> dict[str, Any]:
    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid, sop_uid)
    return docs[0]


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frames}",
    summary="WADO-RS: frames (uncompressed pixel data or the stored compressed frames)",
    description=f"At most {MAX_FRAME_LIST} frame numbers (400 `FrameListTooLong`); a frame "
    "asked for twice is served once.",
    response_class=Response,
    responses={**MULTIPART_DICOM, **problem_responses(400)},
)
async def retrieve_frames(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frames: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
) -> Response:
    numbers = frame_numbers(frames)  # refused before the instance is looked up or read
    doc = await _one_instance(stores, decision, study_uid, series_uid, sop_uid)
    import anyio

    try:
        media, first, rest = await anyio.to_thread.run_sync(
            read_frames, stores.blobs, doc["path"], numbers
        )
    except RuleViolation:
        raise
    except Exception as exc:
        raise NotRenderable(f"the frames cannot be read: {type(exc).__name__}") from exc
    await record_access(request, decision, principal, "rendered")
    return multipart_frames(media, first, rest)


Window = Annotated[
    str | None,
    Query(
        pattern=r"^-?[0-9]{1,6}(\.[0-9]{1,4})?,[0-9]{1,6}(\.[0-9]{1,4})?(,[A-Z_]{1,16})?$",
        description="center,width[,function] of the VOI window",
    ),
]
RENDERED = {
    200: {
        "description": "PNG or JPEG",
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **problem_responses(401, 403, 404, 406),
}


async def _rendered(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame: int,
    window: str | None,
    quality: int,
) -> Response:
    import anyio

    doc = await _one_instance(stores, decision, study_uid, series_uid, sop_uid)
    media = rendered_media(request)
    data = await anyio.to_thread.run_sync(
        render, stores.blobs, doc["path"], frame, media, parse_window(window), quality
    )
    await record_access(request, decision, principal, "rendered")
    return Response(data, media_type=media)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/rendered",
    summary="WADO-RS: the instance (first frame) rendered as JPEG or PNG",
    response_class=Response,
    responses=RENDERED,
)
async def rendered_instance(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
    window: Window = None,
    quality: Annotated[int, Query(ge=1, le=100)] = 90,
) -> Response:
    return await _rendered(
        request, stores, principal, decision, study_uid, series_uid, sop_uid, 1, window, quality
    )


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frame}/rendered",
    summary="WADO-RS: one frame rendered as JPEG or PNG",
    response_class=Response,
    responses=RENDERED,
)
async def rendered_frame(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    frame: Annotated[int, Path(ge=1, le=100_000)],
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
    window: Window = None,
    quality: Annotated[int, Query(ge=1, le=100)] = 90,
) -> Response:
    return await _rendered(
        request, stores, principal, decision, study_uid, series_uid, sop_uid, frame, window, quality
    )


# --- thumbnails --------------------------------------------------------------------------


def parse_viewport(viewport: str | None) -> tuple[int, int]:
    """`width,height`, each kept within 1..1024 (the pattern of the query checks the form)."""
    if not viewport:
        return (128, 128)
    width, height = (min(max(int(v), 1), 1024) for v in viewport.split(",")[:2])
    return width, height


async def _thumbnail(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None,
    sop_uid: str | None,
    viewport: str | None,
) -> Response:
    """A small rendering of the middle image of the (first image series of the) selection."""
    import anyio

    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid, sop_uid)
    images = [d for d in docs if d.get("has_pixels") and d.get("kind") == "image"]
    if not images:
        raise NotRenderable("nothing in this selection has pixel data")
    first_series = images[0]["series_uid"]
    images = [d for d in images if d["series_uid"] == first_series]
    doc = images[len(images) // 2]
    media = rendered_media(request)
    frame = ((doc.get("frames") or 1) + 1) // 2  # the middle frame, 1-based
    data = await anyio.to_thread.run_sync(
        render,
        stores.blobs,
        doc["path"],
        frame,
        media,
        None,
        80,
        parse_viewport(viewport),
    )
    await record_access(request, decision, principal, "rendered")
    return Response(data, media_type=media)


Viewport = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{1,4},[0-9]{1,4}$", description="width,height (default 128,128)"),
]


@router.get(
    "/studies/{study_uid}/thumbnail",
    summary="WADO-RS: a thumbnail of the study",
    response_class=Response,
    responses=RENDERED,
)
async def study_thumbnail(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
    viewport: Viewport = None,
) -> Response:
    return await _thumbnail(request, stores, principal, decision, study_uid, None, None, viewport)


@router.get(
    "/studies/{study_uid}/series/{series_uid}/thumbnail",
    summary="WADO-RS: a thumbnail of the series",
    response_class=Response,
    responses=RENDERED,
)
async def series_thumbnail(
    study_uid: str,
    series_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
    viewport: Viewport = None,
) -> Response:
    return await _thumbnail(
        request, stores, principal, decision, study_uid, series_uid, None, viewport
    )


@router.get(
    "/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/thumbnail",
    summary="WADO-RS: a thumbnail of the instance",
    response_class=Response,
    responses=RENDERED,
)
async def instance_thumbnail(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    request: Request,
    stores: Stores,
    principal: DicomReader,
    decision: ReaderStudyAccess,
    viewport: Viewport = None,
) -> Response:
    return await _thumbnail(
        request, stores, principal, decision, study_uid, series_uid, sop_uid, viewport
    )
