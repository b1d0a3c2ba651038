"""The study store's access barrier as its callers use it (an internal route).

A command of the share service (a revocation, a lock) or of identity (a member leaving a
group or a department, a stricter department policy, a deactivation) that narrows who may open
studies hands the study store the whole streams of the aggregates it changed, right after its
commit, and answers once every study-store API process decides on them
(`study_store.service_layer.access_barrier`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from studyshare.plumbing import propagation
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.internal import InternalClient
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

BARRIER = "/internal/access/barrier"


class AccessBarrierClient:
    """Hands the study store the whole streams of aggregates just changed (as the relay will
    publish them, from this service's event store) and waits until every study-store API
    process decides on them.

    The commands it serves have committed already: when the study store cannot confirm within
    `timeout_s` (or cannot be reached), the command still succeeds, its answer says
    `StudyShare-Propagated: false`, and the events reach the study store through Kafka."""

    def __init__(self, client: InternalClient, store: EventStore, *, timeout_s: float) -> None:
        self.client = client
        self.store = store
        self.timeout_s = timeout_s

    async def propagate(self, aggregate_ids: Sequence[str]) -> bool:
        events = []
        for aggregate_id in dict.fromkeys(aggregate_ids):
            events += await self.store.load_as_published(aggregate_id)
        confirmed, detail = False, None
        try:
            response = await self.client.request(
                "POST",
                BARRIER,
                json={
                    "events": [e.model_dump(mode="json") for e in events],
                    "timeout_s": self.timeout_s,
                },
                timeout=self.timeout_s + 5,
            )
            response.raise_for_status()
            answer = response.json()
            confirmed, detail = bool(answer["confirmed"]), answer
        except Exception as exc:
            detail = {"error": f"{type(exc).__name__}: {exc}"}
        propagation.note(confirmed)
        line = log.info if confirmed else log.warning
        line(
            "access_barrier.confirmed" if confirmed else "access_barrier.not_confirmed",
            aggregates=list(dict.fromkeys(aggregate_ids)),
            events=len(events),
            answer=detail,
        )
        return confirmed

    async def close(self) -> None:
        await self.client.close()

    @classmethod
    def for_settings(cls, settings: Any, store: EventStore) -> AccessBarrierClient | None:
        """The client when `STUDYSHARE_STUDY_STORE_INTERNAL_URL` is set, else None."""
        if not settings.study_store_internal_url:
            return None
        client = InternalClient.for_settings(settings, settings.study_store_internal_url)
        return cls(client, store, timeout_s=settings.access_barrier_timeout_s)
