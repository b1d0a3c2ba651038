"""QIDO-RS: search the studies the caller may open, and a study's series and instances
(`service_layer.search`). Each study returned is registered as searched, each series or
instance list as viewed, before the answer leaves."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.http import problem_responses
from studyshare.study_store.domain.serving import StudyFilters
from studyshare.study_store.entrypoints.anonymized_uids import known, real_study_uids
from studyshare.study_store.entrypoints.dependencies import (
    DicomReader,
    ReaderStudyAccess,
    Stores,
    base_url,
    record_access,
)
from studyshare.study_store.entrypoints.responses import ANY_JSON, DICOM_JSON, json_response
from studyshare.study_store.service_layer import search
from studyshare.study_store.service_layer.retrieval import DicomStores

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])


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
    filters = StudyFilters(
        patient_id=PatientID,
        patient_name=PatientName,
        study_date=StudyDate,
        modalities=ModalitiesInStudy,
        accession_number=AccessionNumber,
    )
    model = request.app.state.access_model
    visible = await search.visible_study_uids(model, principal)
    if StudyInstanceUID:
        visible = visible.among(
            await real_study_uids(request.app.state, known(principal), StudyInstanceUID.split(","))
        )
    results, found = await search.search_studies(
        stores, model.decide, principal, visible, filters, base_url(request), limit, offset
    )
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
    out = await search.search_series(
        stores, decision, study_uid, base_url(request), Modality, SeriesInstanceUID
    )
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
    out = await search.search_instances(stores, decision, study_uid, series_uid, base_url(request))
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
