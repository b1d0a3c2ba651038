"""The notify API's answer models (their names are the OpenAPI schemas' names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class NotificationOut(BaseModel):
    """One message in the delivery log (never its text: template and language only)."""

    id: str = Field(examples=["ntf_0f3c2a9b8e7d6c5b4a392817"])
    kind: Literal["mail", "sms", "fanout"]
    channel: Literal["mail", "sms"]
    state: Literal["pending", "sending", "retry", "sent", "parked", "expanded", "skipped"]
    cause_event_id: str
    cause_event_type: str
    recipient_id: str | None = None
    target_kind: str
    address: str | None = None
    template: str
    language: str | None = None
    attempts: int
    due_at: datetime | None = None
    last_error: str | None = None
    reason: str | None = None
    message_id: str | None = None
    redacted_text: str | None = None
    parent_id: str | None = None
    created_at: datetime
    sent_at: datetime | None = None
    parked_at: datetime | None = None

    @classmethod
    def of(cls, doc: dict[str, Any]) -> NotificationOut:
        open_state = doc["state"] in ("pending", "retry")
        return cls(
            id=doc["_id"],
            kind=doc["kind"],
            channel=doc["channel"],
            state=doc["state"],
            cause_event_id=doc["cause_event_id"],
            cause_event_type=doc["cause_event_type"],
            recipient_id=doc.get("recipient_id"),
            target_kind=doc["target"]["kind"],
            address=doc.get("address"),
            template=doc["template"],
            language=doc.get("language"),
            attempts=doc.get("attempts", 0),
            due_at=doc.get("due_at") if open_state else None,
            last_error=doc.get("last_error"),
            reason=doc.get("reason"),
            message_id=doc.get("message_id"),
            redacted_text=doc.get("redacted_text"),
            parent_id=doc.get("parent_id"),
            created_at=doc["created_at"],
            sent_at=doc.get("sent_at"),
            parked_at=doc.get("parked_at"),
        )


class NotificationList(BaseModel):
    items: list[NotificationOut]
