"""The base of every aggregate: state folded from its events. Pure: no storage, no I/O.

An aggregate's fold methods are marked `@applies`; each is called for the event class its
second parameter is annotated with (dispatch by class, checked when the aggregate class is
defined). Command methods return new events and never touch storage; `aggregate.Repository`
loads, asks and appends.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self, TypeVar, get_type_hints

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import DomainEvent, registry

F = TypeVar("F", bound=Callable[..., None])


def applies(fold: F) -> F:
    """Mark `def fold(self, event: SomeEvent) -> None` as how the aggregate folds SomeEvent."""
    fold.__applies__ = True  # type: ignore[attr-defined]
    return fold


class Aggregate:
    """Base of every aggregate. Subclasses set `aggregate_type` and mark their folds
    `@applies`; an event class without a fold only moves the version."""

    aggregate_type: ClassVar[str]
    _folds: ClassVar[dict[type[DomainEvent], Callable[[Any, Any], None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        folds = dict(cls._folds)
        own: set[type[DomainEvent]] = set()
        for name, member in vars(cls).items():
            if not getattr(member, "__applies__", False):
                continue
            hints = get_type_hints(member)
            hints.pop("return", None)
            event_class = next(iter(hints.values()), None)
            if not (isinstance(event_class, type) and issubclass(event_class, DomainEvent)):
                raise TypeError(f"{cls.__name__}.{name}: annotate the event it folds")
            if event_class in own:
                raise TypeError(f"{cls.__name__}: two folds of {event_class.__name__}")
            own.add(event_class)
            folds[event_class] = member
        cls._folds = folds

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = 0

    @property
    def exists(self) -> bool:
        return self.version > 0

    def apply(self, event: DomainEvent) -> None:
        fold = self._folds.get(type(event))
        if fold is not None:
            fold(self, event)
        self.version += 1

    @classmethod
    def rehydrate(cls, aggregate_id: str, envelopes: Sequence[EventEnvelope]) -> Self:
        aggregate = cls(aggregate_id)
        for envelope in envelopes:
            payload = registry.payload(envelope)
            if payload is None:
                aggregate.version += 1
            else:
                aggregate.apply(payload)
        return aggregate


def new_id(prefix: str) -> str:
    """A readable, unguessable identifier such as `bkt_3f1c...`."""
    return f"{prefix}_{secrets.token_hex(12)}"
