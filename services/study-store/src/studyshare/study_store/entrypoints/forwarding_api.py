"""Forwarding to a PACS and to the regional health network (RSW), and their status.

`POST /api/studies/{uid}/forward` asks for a transfer (the worker performs it), `GET .../transfers`
lists them (the Access tab's "PACS (Transferred)"), `POST .../transfers/{id}/resend` sends again;
`GET/POST /api/studies/{uid}/rsw` is the study's RSW status and its Send button.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import CurrentPrincipal, CurrentUser
from studyshare.plumbing.errors import NotFound
from studyshare.plumbing.http import problem_responses
from studyshare.study_store.domain.exceptions import (
    ForwardNotAllowed,
    NoRswEndpoint,
    RswOnlyForDepartment,
    StudyNotFound,
    UnknownPacs,
)
from studyshare.study_store.domain.serving import OWNING_PATHS, require_images
from studyshare.study_store.entrypoints.dependencies import Stores, StudyAccess, record_access
from studyshare.study_store.entrypoints.models import (
    ForwardRequest,
    PacsView,
    RswStatus,
    TransferView,
)
from studyshare.study_store.service_layer.forwarding import (
    Forwarding,
    SendTerms,
    rsw_transfer_id,
)
from studyshare.study_store.service_layer.retrieval import DicomStores

router = APIRouter(tags=["forwarding"])


def forwarding(stores: Stores) -> Forwarding:
    return Forwarding(stores.db, stores.blobs, stores.settings)


ForwardingDep = Annotated[Forwarding, Depends(forwarding)]


def actor_of(principal: AccessClaims) -> Actor:
    return Actor(
        kind="user" if principal.kind == "user" else "patient",
        id=principal.sub,
        role=(principal.roles or (None,))[0],
    )


def may_forward(decision: AccessDecision) -> None:
    require_images(decision)
    if not decision.download:
        raise ForwardNotAllowed("forwarding needs download permission on this study")


async def existing_study(stores: DicomStores, study_uid: str) -> dict:
    study = await stores.index.study(study_uid)
    if study is None:
        raise StudyNotFound(f"study {study_uid} is not in the store")
    return study


async def view(fw: Forwarding, study_uid: str, transfer_id: str) -> TransferView:
    for row in await fw.transfers_of(study_uid):
        if row["transfer_id"] == transfer_id:
            return TransferView(**row)
    raise NotFound(f"transfer {transfer_id} does not exist")


@router.get(
    "/api/pacs",
    summary="PACS destinations one can forward to",
    response_model=list[PacsView],
    responses=problem_responses(401, 403),
)
async def list_pacs(principal: CurrentUser, fw: ForwardingDep) -> list[PacsView]:
    return [
        PacsView(pacs_id=d["_id"], name=d.get("name", ""), ae_title=d["pacs"]["ae_title"])
        for d in await fw.directory.pacs_list()
    ]


@router.post(
    "/api/studies/{study_uid}/forward",
    summary="Forward the study to a PACS by C-STORE (performed by the worker, with retries)",
    status_code=202,
    response_model=TransferView,
    responses=problem_responses(401, 403, 404),
)
async def forward_study(
    study_uid: str,
    body: ForwardRequest,
    request: Request,
    stores: Stores,
    principal: CurrentUser,
    decision: StudyAccess,
    fw: ForwardingDep,
) -> TransferView:
    may_forward(decision)
    await existing_study(stores, study_uid)
    destination = await fw.directory.get(body.pacs_id)
    if not destination or destination.get("kind") != "pacs" or not destination.get("pacs"):
        raise UnknownPacs(f"{body.pacs_id} is not a PACS destination")
    terms = SendTerms.of(decision)
    transfer = await fw.request(
        study_uid,
        "pacs",
        body.pacs_id,
        actor_of(principal),
        bucket_id=terms.bucket_id,
        anonymous_number=terms.anonymous_number,
        include_report=terms.include_report,
    )
    await record_access(request, decision, principal, "forward")
    return await view(fw, study_uid, transfer.id)


@router.get(
    "/api/studies/{study_uid}/transfers",
    summary="Transfers of the study to PACS and RSW, with their state",
    response_model=list[TransferView],
    responses=problem_responses(401, 403, 404),
)
async def list_transfers(
    study_uid: str, principal: CurrentPrincipal, decision: StudyAccess, fw: ForwardingDep
) -> list[TransferView]:
    require_images(decision)
    rows = await fw.transfers_of(study_uid)
    if decision.via not in OWNING_PATHS:
        rows = [r for r in rows if r["requested_by"] == principal.sub]
    return [TransferView(**r) for r in rows]


@router.post(
    "/api/studies/{study_uid}/transfers/{transfer_id}/resend",
    summary="Send a finished (forwarded or failed) transfer again",
    status_code=202,
    response_model=TransferView,
    responses=problem_responses(401, 403, 404, 409),
)
async def resend_transfer(
    study_uid: str,
    transfer_id: str,
    request: Request,
    principal: CurrentUser,
    decision: StudyAccess,
    fw: ForwardingDep,
) -> TransferView:
    may_forward(decision)
    current = await view(fw, study_uid, transfer_id)
    if current.destination_kind == "rsw" and decision.via not in OWNING_PATHS:
        raise RswOnlyForDepartment("only the study's department resends to RSW")
    if decision.via not in OWNING_PATHS and current.requested_by != principal.sub:
        raise NotFound(f"transfer {transfer_id} does not exist")
    await fw.resend(transfer_id, study_uid, actor_of(principal), terms=SendTerms.of(decision))
    await record_access(request, decision, principal, "forward")
    return await view(fw, study_uid, transfer_id)


async def rsw_department(stores: DicomStores, fw: Forwarding, study_uid: str) -> str:
    study = await existing_study(stores, study_uid)
    department_id = study.get("department_id")
    if not department_id or await fw.directory.destination("rsw", department_id) is None:
        raise NoRswEndpoint("the study's department has no RSW endpoint")
    return department_id


@router.get(
    "/api/studies/{study_uid}/rsw",
    summary="The study's status at the regional health network (RSW)",
    response_model=RswStatus,
    responses=problem_responses(401, 403, 404),
)
async def rsw_status(
    study_uid: str, stores: Stores, principal: CurrentUser, decision: StudyAccess, fw: ForwardingDep
) -> RswStatus:
    require_images(decision)
    if decision.via not in OWNING_PATHS:
        raise RswOnlyForDepartment("the RSW status is for the study's department")
    department_id = await rsw_department(stores, fw, study_uid)
    rows = {r["transfer_id"]: r for r in await fw.transfers_of(study_uid)}
    row = rows.get(rsw_transfer_id(study_uid, department_id))
    return RswStatus(department_id=department_id, transfer=TransferView(**row) if row else None)


@router.post(
    "/api/studies/{study_uid}/rsw",
    summary="Send the study to the regional health network (again)",
    status_code=202,
    response_model=RswStatus,
    responses=problem_responses(401, 403, 404, 409),
)
async def rsw_send(
    study_uid: str,
    request: Request,
    stores: Stores,
    principal: CurrentUser,
    decision: StudyAccess,
    fw: ForwardingDep,
) -> RswStatus:
    require_images(decision)
    if decision.via not in OWNING_PATHS:
        raise RswOnlyForDepartment("only the study's department sends it to RSW")
    department_id = await rsw_department(stores, fw, study_uid)
    transfer_id = rsw_transfer_id(study_uid, department_id)
    existing = await fw.repo.get(transfer_id)
    if existing.exists:
        await fw.resend(transfer_id, study_uid, actor_of(principal))
    else:
        await fw.request(
            study_uid, "rsw", department_id, actor_of(principal), transfer_id=transfer_id
        )
    await record_access(request, decision, principal, "forward")
    return RswStatus(department_id=department_id, transfer=await view(fw, study_uid, transfer_id))
