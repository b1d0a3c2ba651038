"""Events of the identity service (`identity.events`)."""

from __future__ import annotations

from studyshare.contracts.events.base import DomainEvent, registry


@registry.register
class UserRegistered(DomainEvent):
    """An account exists (registered by an admin, or self-registered and pending approval)."""

    aggregate_type = "User"

    user_id: str
    first_name: str
    last_name: str
    roles: tuple[str, ...] = ()
    language: str = "en"
    department_ids: tuple[str, ...] = ()
    pending_approval: bool = False
