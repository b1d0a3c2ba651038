"""The audit HTTP API: study logging, access overview, point in time, alerts, exports, verify.

Every read is recorded first as an `audit_log_used` entry (DICOM 110101) in the audit's own
hash chain; a read that cannot be recorded is not answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response

from studyshare.audit.adapters.store import AuditStore, LogFilter
from studyshare.audit.domain.entries import utc
from studyshare.audit.entrypoints.models import (
    AccessAt,
    AccessOverview,
    Alerts,
    LogEntry,
    LogPage,
    Openings,
    VerifyReport,
)
from studyshare.audit.service_layer.queries import AuditQueries
from studyshare.audit.settings import AuditSettings
from studyshare.plumbing.auth import CurrentPrincipal
from studyshare.plumbing.http import create_app as create_base_app
from studyshare.plumbing.http import kafka_ready, mongo_ready, problem_responses
from studyshare.plumbing.mongo import mongo_client


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`problem_responses`, documented with the media type actually sent
    (`application/problem+json`; plumbing's helper only documents `application/json`)."""
    documented = problem_responses(*statuses)
    for status in statuses:
        documented[status]["content"] = {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    return documented


REFUSALS = refusals(401, 403, 422)
STUDY_REFUSALS = refusals(401, 403, 404, 422)


def queries(request: Request) -> AuditQueries:
    return request.app.state.queries


Queries = Annotated[AuditQueries, Depends(queries)]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="entries to skip")]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Since = Annotated[datetime | None, Query(alias="from", description="from (ISO 8601, inclusive)")]
Until = Annotated[datetime | None, Query(alias="to", description="to (ISO 8601, inclusive)")]
EventTypes = Annotated[list[str], Query(max_length=50, description="event types (repeatable)")]
Categories = Annotated[list[str], Query(max_length=50, description="categories (repeatable)")]
Actor = Annotated[str | None, Query(max_length=200, description="who did it (user id)")]
PatientId = Annotated[str | None, Query(max_length=200, description="patient id")]
StudyParam = Annotated[str, Query(min_length=1, max_length=128, description="Study UID")]

router = APIRouter(prefix="/api/audit", tags=["audit"])


def aware(value: datetime | None) -> datetime | None:
    """A time without offset is read as UTC."""
    return None if value is None else utc(value)


def _page(items: list[dict], total: int, offset: int, limit: int) -> LogPage:
    following = offset + len(items)
    return LogPage(
        items=[LogEntry.of(d) for d in items],
        total=total,
        offset=offset,
        limit=limit,
        next_offset=following if following < total else None,
    )


@router.get(
    "/studies/{uid}/log",
    response_model=LogPage,
    summary="Study logging: every event that touched the study",
    responses=REFUSALS,
)
async def study_log(
    uid: str,
    principal: CurrentPrincipal,
    q: Queries,
    actor: Actor = None,
    patient_id: PatientId = None,
    event_type: EventTypes = (),  # type: ignore[assignment]
    category: Categories = (),  # type: ignore[assignment]
    since: Since = None,
    until: Until = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> LogPage:
    f = LogFilter(None, actor, patient_id, event_type, category, aware(since), aware(until))
    items, total = await q.study_log(principal, uid, f, offset, limit)
    return _page(items, total, offset, limit)


@router.get(
    "/log",
    response_model=LogPage,
    summary="The log per actor, per patient, per study, per time range",
    responses=REFUSALS,
)
async def log(
    principal: CurrentPrincipal,
    q: Queries,
    actor: Actor = None,
    patient_id: PatientId = None,
    study: Annotated[str | None, Query(max_length=128, description="Study UID")] = None,
    event_type: EventTypes = (),  # type: ignore[assignment]
    category: Categories = (),  # type: ignore[assignment]
    since: Since = None,
    until: Until = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> LogPage:
    f = LogFilter(
        [study] if study else None,
        actor,
        patient_id,
        event_type,
        category,
        aware(since),
        aware(until),
    )
    items, total = await q.log(principal, f, offset, limit)
    return _page(items, total, offset, limit)


@router.get(
    "/studies/{uid}/access",
    response_model=AccessOverview,
    summary="The Access tab: grants, break-the-glass, transfers, buckets, reference numbers",
    responses=STUDY_REFUSALS,
)
async def access(uid: str, principal: CurrentPrincipal, q: Queries) -> AccessOverview:
    return AccessOverview.model_validate(await q.access(principal, uid))


@router.get(
    "/my-study/openings",
    response_model=Openings,
    summary="For a patient: who opened their study, when, and how (from the study logging)",
    responses=REFUSALS,
)
async def my_study_openings(principal: CurrentPrincipal, q: Queries) -> Openings:
    return Openings.model_validate(await q.openings(principal))


@router.get(
    "/studies/{uid}/access-at",
    response_model=AccessAt,
    summary="Who could open the study at time t, and through which grant",
    responses=STUDY_REFUSALS,
)
async def access_at(
    uid: str,
    principal: CurrentPrincipal,
    q: Queries,
    t: Annotated[datetime, Query(description="the moment (ISO 8601)")],
) -> AccessAt:
    return AccessAt.model_validate(await q.access_at(principal, uid, utc(t)))


@router.get(
    "/alerts",
    response_model=Alerts,
    summary="Security alerts: bucket locks, break-the-glass, bursts of failures",
    responses=REFUSALS,
)
async def alerts(
    principal: CurrentPrincipal, q: Queries, since: Since = None, until: Until = None
) -> Alerts:
    return Alerts.model_validate(await q.alerts(principal, aware(since), aware(until)))


@router.get(
    "/export/fhir",
    summary="FHIR R5 AuditEvent Bundle of a study's log",
    responses={
        200: {"content": {"application/fhir+json": {}}, "description": "A FHIR Bundle"},
        **STUDY_REFUSALS,
    },
)
async def export_fhir(study: StudyParam, principal: CurrentPrincipal, q: Queries) -> Response:
    import json

    bundle = await q.export_fhir(principal, study)
    return Response(json.dumps(bundle), media_type="application/fhir+json")


@router.get(
    "/export/dicom",
    summary="DICOM PS3.15 A.5 audit messages (XML) of a study's log",
    responses={
        200: {"content": {"application/xml": {}}, "description": "AuditMessage elements"},
        **STUDY_REFUSALS,
    },
)
async def export_dicom(study: StudyParam, principal: CurrentPrincipal, q: Queries) -> Response:
    return Response(await q.export_dicom(principal, study), media_type="application/xml")


@router.get(
    "/verify",
    response_model=VerifyReport,
    summary="Check the hash chains; names the seq of a changed, removed or reordered entry",
    responses=REFUSALS,
)
async def verify(principal: CurrentPrincipal, q: Queries) -> VerifyReport:
    return VerifyReport.model_validate(await q.verify(principal))


@router.get(
    "/reads",
    response_model=LogPage,
    summary="Reads of the audit log (110101 Audit Log Used), optionally of one study",
    responses=REFUSALS,
)
async def reads(
    principal: CurrentPrincipal,
    q: Queries,
    study: Annotated[str | None, Query(max_length=128, description="Study UID")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> LogPage:
    items, total = await q.reads(principal, study, offset, limit)
    return _page(items, total, offset, limit)


async def start(app: FastAPI, settings: AuditSettings, client=None) -> None:
    """Wire the app's state (also used by tests, which run no lifespan)."""
    client = client or mongo_client(settings)
    app.state.mongo = client
    db = client[settings.database_name]
    store = AuditStore(db)  # indexes are made on first use: start-up needs no database
    app.state.store = store
    app.state.queries = AuditQueries(store, settings)


def create_app() -> FastAPI:
    settings = AuditSettings()
    client = mongo_client(settings)
    db = client[settings.database_name]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start(app, settings, client)
        try:
            yield
        finally:
            await client.close()

    return create_base_app(
        settings,
        title="StudyShare audit",
        description="Study logging, access overview, exports and tamper evidence, from the log.",
        routers=[router],
        lifespan=lifespan,
        readiness=[mongo_ready(db), kafka_ready(settings.kafka)],
    )
