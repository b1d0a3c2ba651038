"""The gateway's route table: path prefix -> upstream, built from `studyshare.contracts.routes`.

`/dev` goes to the mail catcher, each service prefix to its service, every other path to the
portal; `STUDYSHARE_EXTRA_ROUTES` adds prefixes of its own (the benchmarks' `/bench`). The
longest matching prefix wins, as in `service_for_path` (and in nginx's prefix locations, which
are generated from this table).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from studyshare.contracts.routes import PORTAL, SERVICES
from studyshare.devstack.settings import GatewaySettings

MAIL_CATCHER = "mailcatcher"


@dataclass(frozen=True)
class Route:
    """Paths equal to `prefix` or under `prefix/` go to `name` at `url` (None: that service
    does not run in this stack, so it answers 503)."""

    prefix: str
    name: str
    url: str | None

    def matches(self, path: str) -> bool:
        if self.prefix == "/":
            return path.startswith("/")
        return path == self.prefix or path.startswith(self.prefix + "/")


def origin(url: str) -> str:
    """`host:port` of an upstream base URL; a proxy passes paths unchanged, so the URL may
    have no path of its own."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"an upstream is http://host:port, not {url!r}")
    return f"{parts.hostname}:{parts.port or 80}"


def route_table(settings: GatewaySettings) -> list[Route]:
    """Every prefix the gateway routes, `/` (the portal) only when the portal is an upstream."""
    routes: dict[str, Route] = {}
    for service in (*SERVICES, PORTAL):
        if service is PORTAL and PORTAL.name not in settings.upstreams:
            continue
        for prefix in service.prefixes:
            url = settings.upstreams.get(service.name)
            routes[prefix] = Route(prefix, service.name, url.rstrip("/") if url else None)
    routes["/dev"] = Route("/dev", MAIL_CATCHER, settings.mail_url.rstrip("/") or None)
    for prefix, url in settings.extra_routes.items():
        clean = "/" + prefix.strip("/")
        routes[clean] = Route(clean, clean, url.rstrip("/"))
    return list(routes.values())


def route(table: list[Route], path: str) -> tuple[str, str | None] | None:
    """`(upstream name, base URL or None)` for `path`, None when nothing answers it."""
    found = [r for r in table if r.matches(path)]
    if not found:
        return None
    best = max(found, key=lambda r: len(r.prefix))
    return best.name, best.url
