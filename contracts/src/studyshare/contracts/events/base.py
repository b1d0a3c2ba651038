"""Versioned, upcastable event payloads (in the manner of the `eventsourcing` library).

A payload class names its `event_type`, `schema_version` and `aggregate_type`. Stored events are
never rewritten: an old payload is upcast step by step (v1 -> v2 -> ...) when it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from studyshare.contracts.envelope import EventEnvelope

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
E = TypeVar("E", bound="DomainEvent")


class DomainEvent(BaseModel):
    """Base of every payload: frozen, and tolerant of fields added later."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__


def renamed(old: str, new: str) -> Upcaster:
    """An upcaster for a version that only renamed the field `old` to `new`."""

    def rename(payload: dict[str, Any]) -> dict[str, Any]:
        upcast = {k: v for k, v in payload.items() if k != old}
        if old in payload:
            upcast[new] = payload[old]
        return upcast

    return rename


class EventRegistry:
    """Knows the current class of every event type and how to upcast older payloads."""

    def __init__(self) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[E]) -> type[E]:
        existing = self._classes.get(cls.event_type)
        if existing is not None and existing is not cls:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._classes[cls.event_type] = cls
        return cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning a `from_version` payload into `from_version + 1`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return decorate

    def event_class(self, event_type: str) -> type[DomainEvent] | None:
        return self._classes.get(event_type)

    def all(self) -> list[type[DomainEvent]]:
        return sorted(self._classes.values(), key=lambda c: (c.aggregate_type, c.event_type))

    def upcast(self, envelope: EventEnvelope) -> EventEnvelope:
        """Bring a stored envelope's payload to the current schema version."""
        cls = self._classes.get(envelope.event_type)
        if cls is None or envelope.schema_version >= cls.schema_version:
            return envelope
        payload, version = dict(envelope.payload), envelope.schema_version
        while version < cls.schema_version:
            step = self._upcasters.get((envelope.event_type, version))
            if step is None:
                raise LookupError(f"no upcaster for {envelope.event_type} v{version}")
            payload, version = step(payload), version + 1
        return envelope.model_copy(update={"payload": payload, "schema_version": version})

    def payload(self, envelope: EventEnvelope) -> DomainEvent | None:
        """The typed, current payload of an envelope, or None for an unknown event type."""
        cls = self._classes.get(envelope.event_type)
        if cls is None:
            return None
        return cls.model_validate(self.upcast(envelope).payload)


registry = EventRegistry()


def payload_of(envelope: EventEnvelope, cls: type[E]) -> E:
    """The envelope's payload as `cls` (upcast first); raises if the type does not match."""
    if envelope.event_type != cls.event_type:
        raise TypeError(f"{envelope.event_type} is not {cls.event_type}")
    return cls.model_validate(registry.upcast(envelope).payload)
