"""The public route table: which service answers which path prefix.

The local gateway and the Kubernetes Ingress are both built from this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str
    package: str
    port: int
    prefixes: tuple[str, ...]
    reads: tuple[str, ...] = ()
    """The topics its workers and API processes consume; on Kubernetes its Kafka user may read
    these and write only the topic it owns (`topics.TOPICS`)."""
    has_relay: bool = True
    has_worker: bool = True


SERVICES: tuple[Service, ...] = (
    Service(
        "identity",
        "identity",
        8101,
        (
            "/api/auth",
            "/api/users",
            "/api/recipients",
            "/api/groups",
            "/api/departments",
            "/.well-known",
        ),
        reads=("study.events",),
    ),
    Service(
        "share",
        "share",
        8102,
        ("/api/shares", "/api/shared-with-me", "/api/favorites", "/api/share-preferences"),
        reads=("identity.events", "share.events", "study.events"),
    ),
    Service(
        "study-store",
        "study_store",
        8103,
        ("/dicomweb", "/api/studies", "/api/pacs"),
        reads=("identity.events", "share.events", "study.events"),
    ),
    Service(
        "notify",
        "notify",
        8104,
        ("/api/notifications",),
        reads=("identity.events", "share.events", "study.events"),
    ),
    Service(
        "audit",
        "audit",
        8105,
        ("/api/audit",),
        reads=("identity.events", "notify.events", "share.events", "study.events"),
        has_relay=False,
    ),
)

SERVICE_BY_NAME = {s.name: s for s in SERVICES}


def service_for_path(path: str) -> Service | None:
    """The service whose prefix matches `path` (longest prefix wins)."""
    best: tuple[int, Service] | None = None
    for service in SERVICES:
        for prefix in service.prefixes:
            if (path == prefix or path.startswith(prefix + "/")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), service)
    return best[1] if best else None
