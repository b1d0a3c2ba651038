"""What operators do with the delivery log: send a parked message back to the queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from studyshare.contracts.envelope import Actor
from studyshare.notify.adapters.deliveries import DeliveryStore
from studyshare.notify.domain.exceptions import NotificationNotFound, NotificationNotParked
from studyshare.notify.domain.notification import Notification
from studyshare.plumbing.aggregate import Events, Repository
from studyshare.plumbing.unit_of_work import Session


async def requeue(
    store: DeliveryStore, events: Events, notification_id: str, actor: Actor
) -> dict[str, Any]:
    """Parked -> pending, attempts from zero; `NotificationRequeued` in the same transaction
    (the delivery log and the event store of one database, or in memory in tests)."""
    doc = await store.get(notification_id)
    if doc is None:
        raise NotificationNotFound(f"no notification {notification_id}")
    if doc["state"] != "parked":
        raise NotificationNotParked(f"notification {notification_id} is {doc['state']}, not parked")
    repository = Repository(events, Notification)

    async def work(session: Session) -> None:
        if not await store.requeue(notification_id, datetime.now(UTC), session=session):
            raise NotificationNotParked(f"notification {notification_id} is no longer parked")
        await repository.execute(
            notification_id,
            lambda n: n.requeue(doc["cause_event_id"], actor.id or "unknown"),
            actor,
            causation_id=doc["cause_event_id"],
            session=session,
        )

    await repository.uow.run(work)
    return await store.get(notification_id) or doc
