"""The `Notification` aggregate: the history of one message (sent, failed, requeued)."""

from __future__ import annotations

from collections.abc import Sequence

from studyshare.contracts.events.base import DomainEvent
from studyshare.contracts.events.notify import (
    NotificationFailed,
    NotificationRequeued,
    NotificationSent,
)
from studyshare.notify.domain.exceptions import NotificationNotParked
from studyshare.plumbing.domain import Aggregate, applies


class Notification(Aggregate):
    aggregate_type = "Notification"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.status = "new"
        self.reason: str | None = None

    @applies
    def when_notification_sent(self, event: NotificationSent) -> None:
        self.status = "sent"

    @applies
    def when_notification_failed(self, event: NotificationFailed) -> None:
        self.status = "failed"
        self.reason = event.reason

    @applies
    def when_notification_requeued(self, event: NotificationRequeued) -> None:
        self.status = "requeued"

    def record_sent(self, event: NotificationSent) -> Sequence[DomainEvent]:
        """Sent once: a second report of the same delivery adds nothing."""
        return [] if self.status == "sent" else [event]

    def record_failed(self, event: NotificationFailed) -> Sequence[DomainEvent]:
        return [] if self.status in ("sent", "failed") else [event]

    def requeue(self, cause_event_id: str, by: str) -> Sequence[DomainEvent]:
        if self.status != "failed":
            raise NotificationNotParked(f"notification {self.id} is not parked ({self.status})")
        return [
            NotificationRequeued(
                notification_id=self.id,
                cause_event_id=cause_event_id,
                requeued_by=by,
                previous_reason=self.reason or "",
            )
        ]
