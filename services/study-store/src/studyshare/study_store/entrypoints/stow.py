"""STOW-RS: `POST /dicomweb/studies[/{study_uid}]` (multipart/related;
type="application/dicom"), stored by `service_layer.stow`."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import CurrentUser
from studyshare.study_store.domain.serving import stow_answer
from studyshare.study_store.entrypoints.anonymized_uids import shown_by_a_share
from studyshare.study_store.entrypoints.dependencies import Stores, base_url
from studyshare.study_store.entrypoints.responses import (
    STOW_REQUEST_BODY,
    STOW_RESPONSES,
    json_response,
)
from studyshare.study_store.service_layer import stow as storing
from studyshare.study_store.service_layer.retrieval import DicomStores

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

#: the STOW-RS routes: their request bodies are bounded by `settings.stow_max_bytes`
STOW = (("POST", "/dicomweb/studies"), ("POST", "/dicomweb/studies/{study_uid}"))


async def receive_stow(
    request: Request,
    stores: DicomStores,
    principal: AccessClaims,
    department_id: str | None,
    study_uid: str | None,
) -> Response:
    outcomes = await storing.receive(
        stores,
        principal,
        department_id,
        study_uid,
        request.headers.get("content-type", ""),
        request.stream(),
        partial(shown_by_a_share, request.app.state),
    )
    return json_response(*stow_answer(outcomes, base_url(request), study_uid))


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
