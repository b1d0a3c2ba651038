"""The operators' view of the delivery log: `/api/notifications` (service desk; auditors read)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Query, Request
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.notify.adapters.deliveries import DeliveryStore
from studyshare.notify.domain.exceptions import NotificationNotFound
from studyshare.notify.entrypoints.models import (
    NotificationList,
    NotificationOut,
)
from studyshare.notify.service_layer import operations
from studyshare.notify.settings import NotifySettings
from studyshare.plumbing.auth import require_roles
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.http import create_app as create_service_app
from studyshare.plumbing.http import kafka_ready, mongo_ready, problem_responses
from studyshare.plumbing.mongo import mongo_client

NOTIFICATION_ID = r"^ntf_[0-9a-f]{24}$"

ServiceDesk = Annotated[AccessClaims, require_roles("service_desk")]
Operator = Annotated[AccessClaims, require_roles("service_desk", "auditor")]


def _db(request: Request) -> AsyncDatabase:
    return request.app.state.db


router = APIRouter(prefix="/api/notifications", tags=["notifications"])


@router.get(
    "",
    summary="Messages of one cause event or recipient (newest first), for operators",
    responses=problem_responses(401, 403, 422),
)
async def list_notifications(
    request: Request,
    principal: Operator,
    cause_event_id: Annotated[str | None, Query(max_length=64)] = None,
    recipient_id: Annotated[str | None, Query(max_length=128)] = None,
    state: Annotated[
        Literal["pending", "sending", "retry", "sent", "parked", "expanded", "skipped"] | None,
        Query(),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NotificationList:
    query: dict[str, Any] = {}
    if cause_event_id is not None:
        query["cause_event_id"] = cause_event_id
    if recipient_id is not None:
        query["recipient_id"] = recipient_id
    if state is not None:
        query["state"] = state
    docs = await DeliveryStore(_db(request)).find(query, limit=limit)
    return NotificationList(items=[NotificationOut.of(d) for d in docs])


@router.get(
    "/parked",
    summary="Parked messages (failed after their last retry) with their reason",
    responses=problem_responses(401, 403, 422),
)
async def parked(
    request: Request,
    principal: ServiceDesk,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NotificationList:
    docs = await DeliveryStore(_db(request)).find({"state": "parked"}, limit=limit)
    return NotificationList(items=[NotificationOut.of(d) for d in docs])


@router.get(
    "/{notification_id}",
    summary="One message of the delivery log",
    responses=problem_responses(401, 403, 404, 422),
)
async def get_notification(
    request: Request,
    principal: Operator,
    notification_id: Annotated[str, Path(pattern=NOTIFICATION_ID)],
) -> NotificationOut:
    doc = await DeliveryStore(_db(request)).get(notification_id)
    if doc is None:
        raise NotificationNotFound(f"no notification {notification_id}")
    return NotificationOut.of(doc)


@router.post(
    "/{notification_id}/retry",
    status_code=202,
    summary="Send a parked message back to the queue",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def retry(
    request: Request,
    principal: ServiceDesk,
    notification_id: Annotated[str, Path(pattern=NOTIFICATION_ID)],
) -> NotificationOut:
    actor = Actor(kind="user", id=principal.sub, role="service_desk")
    db = _db(request)
    doc = await operations.requeue(DeliveryStore(db), EventStore(db), notification_id, actor)
    return NotificationOut.of(doc)


def create_app() -> FastAPI:
    settings = NotifySettings()
    client = mongo_client(settings)
    db = client[settings.database_name]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = db
        await DeliveryStore(db).ensure_indexes()
        await EventStore(db).ensure_indexes()
        try:
            yield
        finally:
            await client.close()

    return create_service_app(
        settings,
        title="StudyShare notify",
        description="Mail and SMS delivery log: parked messages and retries, for operators.",
        routers=[router],
        lifespan=lifespan,
        readiness=[mongo_ready(db), kafka_ready(settings.kafka)],
    )
