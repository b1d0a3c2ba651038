"""Events of the notify service (`notify.events`).

One `Notification` aggregate per (cause event, recipient, channel): its id is
`ntf_<hash of the three>`, so a redelivered cause never makes a second notification. The events
never carry a message's content (no one-time code, no patient data): only what happened to it.
"""

from __future__ import annotations

from typing import Literal

from studyshare.contracts.events.base import DomainEvent, registry

Channel = Literal["mail", "sms"]


@registry.register
class NotificationSent(DomainEvent):
    """One message reached its channel (never carries the message's secret content).

    `attempts` counts the sending attempts it took; `message_id` is the mail's deterministic
    `Message-ID` (the same on every attempt, so a receiver can drop a resent duplicate).
    """

    aggregate_type = "Notification"

    notification_id: str
    cause_event_id: str
    cause_event_type: str
    channel: Channel
    recipient_id: str | None = None
    template: str
    language: str
    attempts: int = 1
    message_id: str | None = None


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
    template: str | None = None


@registry.register
class NotificationRequeued(DomainEvent):
    """An operator sent a parked message back to the queue (`POST .../retry`)."""

    aggregate_type = "Notification"

    notification_id: str
    cause_event_id: str
    requeued_by: str
    previous_reason: str
