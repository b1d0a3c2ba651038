"""`GET /api/studies/{study_uid}/download`: the study as a ZIP of DICOM files.

Only where the access decision allows download; anonymized on the way out on anonymized shares,
and registered as a `download` access. By default the ZIP is a DICOM File-set (a `DICOMDIR`
at its root, as on a CD), which viewers and PACS import directly; `dicomdir=false` gives the
plain files by series. The ZIP is written as it is sent, each object streamed from the blob
store (the DICOMDIR is built from the objects' headers only).
"""

from __future__ import annotations

import asyncio
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydicom.fileset import FileSet

from studyshare.plumbing.auth import CurrentPrincipal
from studyshare.plumbing.errors import NotFound
from studyshare.plumbing.http import problem_responses
from studyshare.plumbing.logging import get_logger
from studyshare.study_store.adapters.blobstore import BlobStore
from studyshare.study_store.adapters.dicom_files import read_header, served_bytes
from studyshare.study_store.domain.anonymize import AnonymizationKey, anonymize_dataset
from studyshare.study_store.domain.exceptions import DownloadNotAllowed
from studyshare.study_store.domain.serving import require_images
from studyshare.study_store.entrypoints.dependencies import Stores, StudyAccess, record_access
from studyshare.study_store.entrypoints.models import (
    UploadedTogether,
)
from studyshare.study_store.service_layer.retrieval import (
    DicomStores,
    study_key,
    visible_instances,
)

log = get_logger(__name__)
router = APIRouter(prefix="/api/studies", tags=["studies"])


class _Pipe:
    """A write-only, non-seekable sink collecting what zipfile writes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


#: the ZIP is handed on in pieces of about this size
PIECE = 1 << 20


async def dicomdir_stream(
    stores: DicomStores, docs: list[dict[str, Any]], key: AnonymizationKey | None
) -> AsyncIterator[bytes]:
    """A DICOM File-set (DICOMDIR + PT*/ST*/SE*/IM* files) zipped; plain files if pydicom
    cannot build a file-set for these objects."""
    with tempfile.TemporaryDirectory(prefix="studyshare-dl-") as tmp:
        try:
            dicomdir, names = await asyncio.to_thread(
                fileset_names, stores.blobs, docs, key, Path(tmp)
            )
        except Exception as exc:
            log.warning("download.no_fileset", error=type(exc).__name__)
            async for piece in zip_stream(stores, docs, key, "DICOM"):
                yield piece
            return
        pipe = _Pipe()
        with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[arg-type]
            archive.writestr("DICOMDIR", dicomdir)
            for doc in sorted(docs, key=lambda d: names[d["_id"]]):
                with archive.open(names[doc["_id"]], "w", force_zip64=True) as entry:
                    async for chunk in served_bytes(stores.blobs, doc, key):
                        entry.write(chunk)
                        if pipe.written > PIECE:
                            yield pipe.take()
                yield pipe.take()
        yield pipe.take()


def fileset_names(
    blobs: BlobStore, docs: list[dict[str, Any]], key: AnonymizationKey | None, root: Path
) -> tuple[bytes, dict[str, str]]:
    """The DICOMDIR of a file-set of `docs` and each instance's file ID in it (by SOP
    Instance UID as stored), built from the instances' headers (as served). Blocking."""
    fileset = FileSet()
    for doc in docs:
        header = read_header(blobs, doc["path"])
        if key is not None:
            anonymize_dataset(header, key, message=doc.get("kind") == "message")
        fileset.add(header)
    base = root / "fileset"
    fileset.write(base)
    served_uid = {(key.uid(d["_id"]) if key else d["_id"]): d["_id"] for d in docs}
    names = {
        served_uid[str(instance.SOPInstanceUID)]: str(Path(instance.path).relative_to(base))
        for instance in fileset
    }
    return (base / "DICOMDIR").read_bytes(), names


async def zip_stream(
    stores: DicomStores, docs: list[dict[str, Any]], key: AnonymizationKey | None, folder: str
) -> AsyncIterator[bytes]:
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[arg-type]
        for number, doc in enumerate(docs, start=1):
            series_uid, sop_uid = doc["series_uid"], doc["_id"]
            if key is not None:
                series_uid, sop_uid = key.uid(series_uid), key.uid(sop_uid)
            name = f"{folder}/{series_uid}/{number:05d}_{sop_uid}.dcm"
            with archive.open(name, "w", force_zip64=True) as entry:
                async for chunk in served_bytes(stores.blobs, doc, key):
                    entry.write(chunk)
                    if pipe.written > PIECE:
                        yield pipe.take()
            yield pipe.take()
    yield pipe.take()


@router.get(
    "/{study_uid}/download",
    summary="Download the study as a ZIP of DICOM files (where download is allowed)",
    response_class=Response,
    responses={
        200: {
            "description": "application/zip",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
        **problem_responses(401, 403, 404),
    },
)
async def download_study(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: CurrentPrincipal,
    decision: StudyAccess,
    dicomdir: Annotated[bool, Query(description="a DICOM File-set with DICOMDIR")] = True,
) -> Response:
    require_images(decision)
    if not decision.download:
        raise DownloadNotAllowed("download was not allowed for this study")
    docs = await visible_instances(stores, decision, study_uid)
    key = await study_key(stores, decision, study_uid)
    await record_access(request, decision, principal, "download")
    body = (
        dicomdir_stream(stores, docs, key) if dicomdir else zip_stream(stores, docs, key, "DICOM")
    )
    return StreamingResponse(
        body,
        media_type="application/zip",
        headers={
            "Content-Disposition": (
                f'attachment; filename="study-{key.uid(study_uid) if key else study_uid}.zip"'
            )
        },
    )


@router.get(
    "/{study_uid}/uploaded-together",
    summary="The studies uploaded together with this one (same STOW request or association)",
    response_model=UploadedTogether,
    responses=problem_responses(401, 403, 404),
)
async def uploaded_together(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: CurrentPrincipal,
    decision: StudyAccess,
) -> UploadedTogether:
    """For "share all exams uploaded together": only those the caller may open in the clear
    are listed (one they hold only anonymized would be tied to this study, and to its
    patient, by its real UID)."""
    require_images(decision)
    if await stores.index.study(study_uid) is None:
        raise NotFound(f"study {study_uid} is not in the store")
    key = await study_key(stores, decision, study_uid)
    if key is not None:  # an anonymized share shows no other study of the patient
        return UploadedTogether(study_uid=key.uid(study_uid), study_uids=[key.uid(study_uid)])
    model = request.app.state.access_model
    together = [
        uid
        for uid in await stores.index.studies_uploaded_with(study_uid)
        if uid == study_uid
        or ((d := await model.decide(principal, uid)).images and not d.anonymized)
    ]
    return UploadedTogether(study_uid=study_uid, study_uids=together or [study_uid])
