"""The public route table: which service answers which path prefix, and how large a request
body each route takes.

The local gateway and the Kubernetes Ingress are both built from this table.
"""

from __future__ import annotations

import re
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
        (
            "/api/shares",
            "/api/shared-with-me",
            "/api/favorites",
            "/api/share-preferences",
            "/api/labels",
        ),
        reads=("identity.events", "study.events"),
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


# --- internal routes ----------------------------------------------------------------------
#: Service-to-service routes live under this prefix, which no public prefix covers: the
#: gateway and the Ingress send such paths to the portal (404), never to a service.
INTERNAL_PREFIX = "/internal"


@dataclass(frozen=True)
class InternalRoute:
    """A route one service calls on another (`studyshare.plumbing.internal`): answered by
    `service`, admitting only `callers` (each with its own credential)."""

    service: str
    method: str
    path: str
    callers: tuple[str, ...]


#: every service whose API processes follow identity's list of ended sessions
SESSION_FOLLOWERS = ("share", "study-store", "notify", "audit")

INTERNAL_ROUTES: tuple[InternalRoute, ...] = (
    # an API process long-polls the ended sessions; a logout waits for every such process
    InternalRoute("identity", "GET", "/internal/session-ends", SESSION_FOLLOWERS),
    InternalRoute(
        "identity", "DELETE", "/internal/session-ends/followers/{follower}", SESSION_FOLLOWERS
    ),
    # a command narrowing access (share: revocation, lock; identity: membership, roles,
    # policy, deactivation) hands its aggregates' events to the access model and waits until
    # every study-store API process decides on them
    InternalRoute("study-store", "POST", "/internal/access/barrier", ("share", "identity")),
)


def internal_callers(service: str, method: str, path: str) -> tuple[str, ...]:
    """The services admitted to one internal route of `service`."""
    for route in INTERNAL_ROUTES:
        if (route.service, route.method, route.path) == (service, method, path):
            return route.callers
    raise LookupError(f"no internal route {method} {path} of {service}")


# --- request bodies -----------------------------------------------------------------------
#: Every route takes a request body of at most this many bytes unless `BODY_LIMITS` names it:
#: the JSON commands are small. A larger body is refused (413 problem+json, rule
#: `RequestBodyTooLarge`) before it is read: by its Content-Length, or once it has streamed
#: past the limit. The Ingress allows the same sizes (`deploy/k8s/generate.py`).
DEFAULT_BODY_MAX_BYTES = 64 * 1024
#: STOW-RS uploads (the study store streams their parts to the blob store)
STOW_MAX_BYTES = 4 * 1024**3
#: a report: a PDF of 8 MiB, or 200,000 characters of text as JSON
REPORT_MAX_BYTES = 9 * 1024**2


@dataclass(frozen=True)
class BodyLimit:
    """A route that takes a larger request body than `DEFAULT_BODY_MAX_BYTES`."""

    service: str
    method: str
    path: str
    """The route's path template, e.g. `/api/studies/{study_uid}/report`."""
    max_bytes: int

    @property
    def path_regex(self) -> str:
        return path_regex(self.path)


def path_regex(template: str) -> str:
    """A path template (`/a/{b}/c`) as an anchored regular expression, one segment for each
    `{parameter}` (the Ingress and the services' body limits match paths with it)."""
    out, rest = "^", template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        out += re.escape(head) + "[^/]+"
        rest = tail.partition("}")[2]
    return out + re.escape(rest) + "$"


#: a share: up to 500 study UIDs and 200 recipients (each within its validated length)
SHARE_MAX_BYTES = 256 * 1024

BODY_LIMITS: tuple[BodyLimit, ...] = (
    BodyLimit("share", "POST", "/api/shares", SHARE_MAX_BYTES),
    BodyLimit("share", "POST", "/api/shares/{bucket_id}/share-again", SHARE_MAX_BYTES),
    BodyLimit("study-store", "POST", "/dicomweb/studies", STOW_MAX_BYTES),
    BodyLimit("study-store", "POST", "/dicomweb/studies/{study_uid}", STOW_MAX_BYTES),
    BodyLimit("study-store", "PUT", "/api/studies/{study_uid}/report", REPORT_MAX_BYTES),
)


def body_limits_of(service: str) -> dict[tuple[str, str], int]:
    """`(method, path template) -> max bytes` of the routes of `service` with a larger body."""
    return {(b.method, b.path): b.max_bytes for b in BODY_LIMITS if b.service == service}
