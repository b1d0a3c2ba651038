"""Events of the notify service (`notify.events`)."""

from __future__ import annotations

from typing import Literal

from studyshare.contracts.events.base import DomainEvent, registry

Channel = Literal["mail", "sms"]


@registry.register
class NotificationSent(DomainEvent):
    """One message reached its channel (never carries the message's secret content)."""

    aggregate_type = "Notification"

    notification_id: str
    cause_event_id: str
    cause_event_type: str
    channel: Channel
    recipient_id: str | None = None
    template: str
    language: str


@registry.register
class NotificationFailed(DomainEvent):
    """A message could not be delivered after its last retry and is parked for operators."""

    aggregate_type = "Notification"

    notification_id: str
    cause_event_id: str
    cause_event_type: str
    channel: Channel
    recipient_id: str | None = None
    reason: str
    attempts: int
