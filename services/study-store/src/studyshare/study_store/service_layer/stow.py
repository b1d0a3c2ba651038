"""Storing (STOW-RS): a multipart/related upload spooled part by part into the blob store,
then received by the ingest (`service_layer.ingest`), one outcome per part."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.study_store.adapters.blobstore import SpoolSink
from studyshare.study_store.adapters.multipart import (
    MultipartError,
    MultipartSpooler,
    boundary_of,
    spool,
)
from studyshare.study_store.domain.exceptions import UnsupportedMediaType
from studyshare.study_store.domain.serving import is_dicom_part, upload_department
from studyshare.study_store.service_layer.ingest import Outcome, Reserved, Upload
from studyshare.study_store.service_layer.retrieval import DicomStores


def upload_for(principal: AccessClaims, department_id: str | None) -> Upload:
    return Upload(
        via="stow-rs",
        actor=Actor(kind="user", id=principal.sub, role=(principal.roles or (None,))[0]),
        department_id=upload_department(principal, department_id),
        owner_id=principal.sub,
    )


async def receive(
    stores: DicomStores,
    principal: AccessClaims,
    department_id: str | None,
    study_uid: str | None,
    content_type: str,
    body: AsyncIterable[bytes],
    reserved: Reserved | None = None,
) -> list[Outcome]:
    """Store the DICOM parts of an upload (into `study_uid` only, when given); the outcome of
    each part, the parts that are no DICOM objects last."""
    boundary = boundary_of(content_type)
    upload = upload_for(principal, department_id)
    parts: list[tuple[dict[str, str], SpoolSink]] = []

    def open_part(headers: dict[str, str]) -> SpoolSink:
        sink = stores.blobs.spool()
        parts.append((headers, sink))
        return sink

    spooler = MultipartSpooler(boundary, open_part, stores.settings.stow_max_parts)
    try:
        size = await spool(body, spooler, stores.settings.stow_max_bytes)
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
            if sink.spooled is not None and is_dicom_part(headers)
        ]
        skipped = len(parts) - len(objects)
        outcomes = await stores.ingest.receive(
            upload, objects, expect_study=study_uid, owner_check=True, reserved=reserved
        )
    finally:
        await asyncio.to_thread(lambda: [sink.discard() for _, sink in parts])
    return outcomes + [Outcome(None, None, None, None, 0xC000, "not application/dicom")] * skipped
