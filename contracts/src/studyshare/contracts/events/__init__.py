"""Event payloads, one module per topic; each module is owned by the service that writes it."""

from studyshare.contracts.events.base import DomainEvent, payload_of, registry

__all__ = ["DomainEvent", "payload_of", "registry"]


def load_catalogue() -> None:
    """Import every topic module so the registry knows every event."""
    from studyshare.contracts.events import identity, notify, share, study  # noqa: F401


load_catalogue()
