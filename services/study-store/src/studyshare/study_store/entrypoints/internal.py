"""The study store's internal routes (`plumbing.internal`): the access barrier."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from studyshare.contracts.routes import internal_callers
from studyshare.plumbing.internal import internal_caller
from studyshare.study_store.entrypoints.models import (
    BarrierIn,
    BarrierOut,
)
from studyshare.study_store.service_layer.access_barrier import AccessBarrier

router = APIRouter(include_in_schema=False)
BARRIER = "/internal/access/barrier"
#: a bucket's stream with a share of 500 studies and 200 recipients, a few of them
BARRIER_MAX_BYTES = 8 * 1024**2


@router.post(BARRIER)
async def access_barrier(
    body: BarrierIn,
    request: Request,
    caller: Annotated[str, internal_caller(*internal_callers("study-store", "POST", BARRIER))],
) -> BarrierOut:
    """Fold the caller's whole streams into the access read model; answer once every API
    process decides on them (`confirmed`), or when `timeout_s` ran out."""
    barrier: AccessBarrier = request.app.state.access_barrier
    outcome = await barrier.apply_and_wait(caller, body.events, body.timeout_s)
    return BarrierOut(
        confirmed=outcome.confirmed,
        followers=outcome.followers,
        behind=outcome.behind,
        waited_ms=round(outcome.waited_s * 1000, 1),
    )
