"""WADO-RS: retrieve a study, series or instance (multipart/related; type=application/dicom),
their metadata (DICOM JSON) and an instance's frames, through `service_layer.retrieval`.

The study, series and instance reads are declared hot (`@hot`): the same functions answer them
first without FastAPI's stack (`studyshare.plumbing.hot`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.hot import HotHandler, hot
from studyshare.plumbing.http import problem_responses
from studyshare.study_store.adapters import multipart
from studyshare.study_store.domain.serving import MAX_FRAME_LIST, frame_numbers
from studyshare.study_store.entrypoints.dependencies import (
    DicomReader,
    ReaderStudyAccess,
    Stores,
    base_url,
    dicom_reader,
    record_access,
    study_access,
)
from studyshare.study_store.entrypoints.responses import (
    DICOM_JSON,
    METADATA,
    MULTIPART_DICOM,
    multipart_response,
)
from studyshare.study_store.service_layer import retrieval
from studyshare.study_store.service_layer.retrieval import DicomStores

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])


async def _retrieve(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Response:
    chosen = await retrieval.select(stores, decision, study_uid, series_uid, sop_uid)
    await record_access(request, decision, principal, "instances")
    return multipart_response(await retrieval.instances(stores, chosen))


async def _metadata(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Response:
    chosen = await retrieval.select(stores, decision, study_uid, series_uid, sop_uid)
    base = base_url(request)
    await record_access(request, decision, principal, "metadata")
    return Response(retrieval.metadata(stores, chosen, study_uid, base), media_type=DICOM_JSON)


def _hot(read: Callable[..., Any]) -> HotHandler:
    """The hot handler (`studyshare.plumbing.hot`) for a route that `read`s (`_retrieve`,
    `_metadata`): the same token check and access decision as the route's dependencies; path
    parameters arrive in path order."""

    async def handler(request: Request, study_uid: str, **uids: str) -> Response:
        principal = await dicom_reader(request)
        decision = await study_access(study_uid, principal, request)
        stores = request.app.state.dicom
        return await read(request, stores, principal, decision, study_uid, *uids.values())

    return handler


@router.get(
    "/studies/{study_uid}",
    summary="WADO-RS: retrieve a study",
    response_class=Response,
    responses=MULTIPART_DICOM,
)
@hot(_hot(_retrieve))
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
@hot(_hot(_metadata))
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
@hot(_hot(_retrieve))
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
@hot(_hot(_metadata))
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
@hot(_hot(_retrieve))
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
@hot(_hot(_metadata))
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


# --- frames ------------------------------------------------------------------------------


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
    doc = await retrieval.one_instance(stores, decision, study_uid, series_uid, sop_uid)
    media, first, rest = await retrieval.frames(stores, doc, numbers)
    await record_access(request, decision, principal, "rendered")
    return multipart_response(multipart.frames(media, first, rest))
