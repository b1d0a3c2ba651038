"""Hot routes: a few GET routes answered without FastAPI's middleware, routing and dependency
injection, which cost several times the work of a small authorized read.

A service names the read routes that carry most of its traffic, each with a handler calling
the same functions as the route's dependencies and body. `ServiceApp` (see `http`) tries the
handler first; whatever the handler does not answer, a refusal, bad input, or any exception,
is handed to the full FastAPI app, which answers it exactly as always (problem+json). So a
handler should register side effects (access logging) only once nothing can fail anymore.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, compile_path
from starlette.types import Receive, Scope

from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

#: `handler(request, **path_params)`: the response, or raise to let FastAPI answer
HotHandler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class HotRoute:
    """`path` is the path template of the FastAPI GET route it stands in for (same
    parameters, plain strings); the app refuses to start when no such route exists."""

    path: str
    handler: HotHandler


class HotRoutes:
    """Matches a request against the hot routes and runs the handler."""

    def __init__(self, routes: Sequence[HotRoute]) -> None:
        self.routes = [(compile_path(r.path)[0], r) for r in routes]
        self._shadowed: dict[str, BaseRoute] = {}
        self._earlier: dict[str, list[re.Pattern[str]]] = {}

    def bind(self, app_routes: Sequence[BaseRoute]) -> None:
        """Find the FastAPI route each hot route stands in for (metrics and logs name it), and
        the earlier GET routes that could take some of its paths (those stay FastAPI's)."""
        flat = [r for r in _flatten(app_routes) if "GET" in (getattr(r, "methods", None) or ())]
        for _, hot in self.routes:
            at = next((i for i, r in enumerate(flat) if getattr(r, "path", None) == hot.path), None)
            if at is None:
                raise RuntimeError(f"hot route {hot.path} has no FastAPI GET route")
            self._shadowed[hot.path] = flat[at]
            self._earlier[hot.path] = [
                r.path_regex  # type: ignore[attr-defined]
                for r in flat[:at]
                if _may_overlap(getattr(r, "path", ""), hot.path)
            ]

    def match(self, scope: Scope) -> tuple[HotRoute, dict[str, Any]] | None:
        if scope["method"] != "GET":
            return None
        path = scope["path"]
        for pattern, route in self.routes:
            found = pattern.match(path)
            if found is not None:
                if any(earlier.match(path) for earlier in self._earlier[route.path]):
                    return None  # an earlier route takes this one
                return route, found.groupdict()
        return None

    async def attempt(
        self, route: HotRoute, params: dict[str, Any], scope: Scope, receive: Receive
    ) -> Response | None:
        """The handler's response, or None when the full app should answer instead."""
        if not self._shadowed:
            return None
        scope["route"] = self._shadowed[route.path]
        scope["path_params"] = params
        try:
            return await route.handler(Request(scope, receive), **params)
        except Exception as exc:  # the full app answers (or fails) in its usual way
            log.debug("hot_route.handed_over", route=route.path, error=type(exc).__name__)
            return None


def _flatten(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """The app's routes in the order FastAPI tries them, included routers opened."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flatten(included.routes)
        elif getattr(route, "path_regex", None) is not None:
            yield route


def _may_overlap(path: str, template: str) -> bool:
    """Whether some request path matches both route templates (`{x:path}` may match any)."""
    if ":path}" in path:
        return True
    ours, theirs = template.split("/"), path.split("/")
    if len(ours) != len(theirs):
        return False
    return all(
        a == b or a.startswith("{") or b.startswith("{") for a, b in zip(ours, theirs, strict=True)
    )
