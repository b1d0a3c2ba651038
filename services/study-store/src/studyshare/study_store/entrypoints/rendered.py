"""WADO-RS rendered resources: an instance or one frame as JPEG or PNG (`/rendered`), and
thumbnails of a study, series or instance (`/thumbnail`), rendered by `adapters.pixels`
through `service_layer.retrieval`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.study_store.domain.serving import parse_viewport, parse_window, rendered_media
from studyshare.study_store.entrypoints.dependencies import (
    DicomReader,
    ReaderStudyAccess,
    Stores,
    record_access,
)
from studyshare.study_store.entrypoints.responses import RENDERED
from studyshare.study_store.service_layer import retrieval
from studyshare.study_store.service_layer.retrieval import DicomStores

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

Window = Annotated[
    str | None,
    Query(
        pattern=r"^-?[0-9]{1,6}(\.[0-9]{1,4})?,[0-9]{1,6}(\.[0-9]{1,4})?(,[A-Z_]{1,16})?$",
        description="center,width[,function] of the VOI window",
    ),
]
Viewport = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{1,4},[0-9]{1,4}$", description="width,height (default 128,128)"),
]


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
    doc = await retrieval.one_instance(stores, decision, study_uid, series_uid, sop_uid)
    media = rendered_media(request.headers.get("accept", ""))
    data = await retrieval.rendered(stores, doc, frame, media, parse_window(window), quality)
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
    media = rendered_media(request.headers.get("accept", ""))
    data = await retrieval.thumbnail(
        stores, decision, study_uid, series_uid, sop_uid, media, parse_viewport(viewport)
    )
    await record_access(request, decision, principal, "rendered")
    return Response(data, media_type=media)


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
