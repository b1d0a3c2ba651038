"""The study store as the share service calls it: the access barrier (an internal route)."""

from __future__ import annotations

from collections.abc import Sequence

from studyshare.plumbing import propagation
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.internal import InternalClient
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

BARRIER = "/internal/access/barrier"


class AccessBarrierClient:
    """Hands the study store the whole streams of buckets just revoked or locked (as the relay
    will publish them) and waits until every study-store API process decides on them.

    The commands it serves have committed already: when the study store cannot confirm within
    `timeout_s` (or cannot be reached), the command still succeeds, its answer says
    `StudyShare-Propagated: false`, and the events reach the study store through Kafka."""

    def __init__(self, client: InternalClient, store: EventStore, *, timeout_s: float) -> None:
        self.client = client
        self.store = store
        self.timeout_s = timeout_s

    async def propagate(self, bucket_ids: Sequence[str]) -> bool:
        events = []
        for bucket_id in dict.fromkeys(bucket_ids):
            events += await self.store.load_as_published(bucket_id)
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
            buckets=list(dict.fromkeys(bucket_ids)),
            events=len(events),
            answer=detail,
        )
        return confirmed

    async def close(self) -> None:
        await self.client.close()
