"""Hot routes: a few GET routes answered without FastAPI's middleware, routing and dependency
injection, which cost several times the work of a small authorized read.

A service declares on the few read routes that carry most of its traffic (`@hot(handler)`) a
handler calling the same functions as the route's dependencies and body. `ServiceApp` (see
`http`) tries the handler first; whatever the handler does not answer, a refusal, bad input,
or any exception, is handed to the full FastAPI app, which answers it exactly as always
(problem+json). So a handler should register side effects (access logging) only once nothing
can fail anymore.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope

from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

#: `handler(request, **path_params)`: the response, or raise to let FastAPI answer
HotHandler = Callable[..., Awaitable[Response]]
E = TypeVar("E", bound=Callable[..., Any])
_HOT = "__hot_handler__"


def hot(handler: HotHandler) -> Callable[[E], E]:
    """Declare on a FastAPI GET route's endpoint the handler that answers it first:

        @router.get("/things/{name}")
        @hot(hot_thing)
        async def thing(name: str, ...): ...

    The handler takes the route's path parameters (plain strings) as keyword arguments."""

    def declare(endpoint: E) -> E:
        setattr(endpoint, _HOT, handler)
        return endpoint

    return declare


@dataclass(frozen=True)
class _Hot:
    route: BaseRoute
    handler: HotHandler
    #: earlier GET routes that could take some of its paths (those stay FastAPI's)
    earlier: tuple[re.Pattern[str], ...]


class HotRoutes:
    """The app's routes declared `hot`, in routing order: matches a request and runs the
    handler."""

    def __init__(self, app_routes: Sequence[BaseRoute]) -> None:
        routes = list(_flatten(app_routes))
        flat = [r for r in routes if "GET" in (getattr(r, "methods", None) or ())]
        for route in routes:
            if _handler(route) is not None and route not in flat:
                raise RuntimeError(f"hot route {getattr(route, 'path', route)} is not a GET route")
        self.routes = [
            _Hot(
                route,
                handler,
                tuple(
                    r.path_regex  # type: ignore[attr-defined]
                    for r in flat[:at]
                    if _may_overlap(getattr(r, "path", ""), getattr(route, "path", ""))
                ),
            )
            for at, route in enumerate(flat)
            if (handler := _handler(route)) is not None
        ]

    def __bool__(self) -> bool:
        return bool(self.routes)

    def match(self, scope: Scope) -> tuple[_Hot, dict[str, Any]] | None:
        if scope["method"] != "GET":
            return None
        path = scope["path"]
        for hot_route in self.routes:
            found = hot_route.route.path_regex.match(path)  # type: ignore[attr-defined]
            if found is not None:
                if any(earlier.match(path) for earlier in hot_route.earlier):
                    return None  # an earlier route takes this one
                return hot_route, found.groupdict()
        return None

    async def attempt(
        self, hot_route: _Hot, params: dict[str, Any], scope: Scope, receive: Receive
    ) -> Response | None:
        """The handler's response, or None when the full app should answer instead."""
        scope["route"] = hot_route.route
        scope["path_params"] = params
        try:
            return await hot_route.handler(Request(scope, receive), **params)
        except Exception as exc:  # the full app answers (or fails) in its usual way
            log.debug("hot_route.handed_over", route=scope["path"], error=type(exc).__name__)
            return None


def _handler(route: BaseRoute) -> HotHandler | None:
    return getattr(getattr(route, "endpoint", None), _HOT, None)


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
