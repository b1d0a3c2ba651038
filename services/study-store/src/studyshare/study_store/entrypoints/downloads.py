"""`GET /api/studies/{study_uid}/download`: the study as a ZIP of DICOM files.

Only where the access decision allows download; streamed (the ZIP is written as it is sent),
anonymized on the way out on anonymized shares, and registered as a `download` access.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from studyshare.plumbing.auth import CurrentPrincipal
from studyshare.plumbing.errors import Forbidden
from studyshare.study_store.domain.anonymize import AnonymizationKey
from studyshare.study_store.entrypoints.dependencies import StudyAccess
from studyshare.study_store.entrypoints.dicomweb import (
    DicomStores,
    Stores,
    problem_responses,
    record_access,
    require_images,
    served_bytes,
    study_key,
    visible_instances,
)

router = APIRouter(prefix="/api/studies", tags=["studies"])


class DownloadNotAllowed(Forbidden):
    """The share did not allow download (only the images may be viewed)."""


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


def zip_stream(
    stores: DicomStores, docs: list[dict[str, Any]], key: AnonymizationKey | None, folder: str
) -> Iterator[bytes]:
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[arg-type]
        for number, doc in enumerate(docs, start=1):
            name = f"{folder}/{doc['series_uid']}/{number:05d}_{doc['_id']}.dcm"
            with archive.open(name, "w", force_zip64=True) as entry:
                for chunk in served_bytes(stores, doc, key):
                    entry.write(chunk)
                    if pipe.written > 1 << 20:
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
) -> Response:
    require_images(decision)
    if not decision.download:
        raise DownloadNotAllowed("download was not allowed for this study")
    docs = await visible_instances(stores, decision, study_uid, with_meta=False)
    key = await study_key(stores, decision, study_uid)
    await record_access(request, decision, principal, "download")
    folder = "DICOM"
    return StreamingResponse(
        zip_stream(stores, docs, key, folder),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="study-{study_uid}.zip"'},
    )
