"""The one envelope every StudyShare event travels in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator

ActorKind = Literal["user", "patient", "service", "system", "anonymous"]


class Actor(BaseModel):
    """Who did it, on whose behalf, in which role."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: ActorKind = "user"
    id: str | None = None
    on_behalf_of: str | None = None
    role: str | None = None
    ip: str | None = None

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(kind="system", id=name)


class EventEnvelope(BaseModel):
    """Metadata plus a payload; consumers ignore fields they do not know."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID = Field(default_factory=uuid4)
    event_type: str
    schema_version: int = 1
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int = Field(ge=1)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    actor: Actor = Field(default_factory=lambda: Actor(kind="system"))
    correlation_id: str
    causation_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _utc_milliseconds(cls, value: datetime) -> datetime:
        """UTC at millisecond precision, exactly what MongoDB and JSON keep."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)

    @property
    def topic(self) -> str:
        from studyshare.contracts.topics import topic_for_aggregate

        return topic_for_aggregate(self.aggregate_type)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> EventEnvelope:
        return cls.model_validate_json(raw)
