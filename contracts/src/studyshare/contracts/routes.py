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
    ),
    Service(
        "share",
        "share",
        8102,
        ("/api/shares", "/api/shared-with-me", "/api/favorites", "/api/share-preferences"),
    ),
    Service("study-store", "study_store", 8103, ("/dicomweb", "/api/studies", "/api/pacs")),
    Service("notify", "notify", 8104, ("/api/notifications",)),
    Service("audit", "audit", 8105, ("/api/audit",), has_relay=False),
)

SERVICE_BY_NAME = {s.name: s for s in SERVICES}

#: The web portal (`studyshare.portal`): pages for people, a frontend of the routes above. It
#: answers every path no service prefix matches (`/`, `/login`, `/studies/{uid}`, the links in
#: mails and SMS); it has no events, no relay and no worker.
PORTAL = Service("portal", "portal", 8106, ("/",), has_relay=False, has_worker=False)


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


def upstream_for_path(path: str) -> Service:
    """The service for `path`, else the portal (the default route of the gateway)."""
    return service_for_path(path) or PORTAL
