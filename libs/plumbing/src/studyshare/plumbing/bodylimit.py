"""Request bodies bounded per route, before they are read.

`BodyLimitMiddleware` (installed once by `http.create_app`) gives every route the service's
default limit (`ServiceSettings.http_body_max_bytes`, small: the JSON commands) and the routes
of `studyshare.contracts.routes.BODY_LIMITS` (DICOM uploads, reports) their own. A request
whose Content-Length says more is refused before the route runs; a body without a length
(chunked) is counted while the route reads it and cut at the limit. Either way the answer is
413 problem+json with rule `RequestBodyTooLarge`. Requests without a body pass untouched.

Before answering, the rest of a refused body is read and dropped (up to `DRAIN_MAX_BYTES`,
never kept): a proxy that sends the whole body before it reads the answer would otherwise
see the connection close under it and answer 502. Past that, the connection is closed. In
production the Ingress refuses the same sizes before they reach a service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studyshare.contracts.routes import path_regex
from studyshare.plumbing.errors import TooLarge
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

#: how much of a refused body is read and dropped before the answer (then the connection closes)
DRAIN_MAX_BYTES = 64 * 1024 * 1024


class RequestBodyTooLarge(TooLarge):
    """The request body is larger than this route takes."""

    title = "Payload too large"


class BodyLimits:
    """The limit of each request: the routes named, else the default."""

    def __init__(self, default_max: int, routes: Mapping[tuple[str, str], int]) -> None:
        self.default_max = default_max
        self.routes = [
            (method.upper(), re.compile(path_regex(path)), limit)
            for (method, path), limit in routes.items()
        ]

    def limit_for(self, method: str, path: str) -> int:
        for route_method, pattern, limit in self.routes:
            if route_method == method and pattern.match(path):
                return limit
        return self.default_max


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if (length is None or length == b"0") and not chunked:
            await self.app(scope, receive, send)  # no body: nothing to bound
            return
        limit = self.limits.limit_for(scope["method"], scope["path"])
        if length is not None and length.isdigit() and int(length) > limit:
            await self.refuse(scope, receive, send, limit)
            return

        received = 0
        exceeded = False
        started = False
        unread = True

        async def bounded_receive() -> Message:
            nonlocal received, exceeded, unread
            message = await receive()
            unread = message["type"] == "http.request" and message.get("more_body", False)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise RequestBodyTooLarge(self.detail(scope, limit))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # what the route answered to a cut body; the refusal follows
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self.refuse(scope, receive, send, limit, drain=unread)

    @staticmethod
    def detail(scope: Scope, limit: int) -> str:
        return (
            f"the request body is larger than the {limit} bytes "
            f"{scope['method']} {scope['path']} takes"
        )

    async def refuse(
        self, scope: Scope, receive: Receive, send: Send, limit: int, drain: bool = True
    ) -> None:
        from studyshare.plumbing.http import refused

        drained, more = 0, drain
        while more and drained <= DRAIN_MAX_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)

        response = refused(RequestBodyTooLarge(self.detail(scope, limit)))
        log.info(
            "request.refused",
            rule="RequestBodyTooLarge",
            status=response.status_code,
            path=scope["path"],
            limit=limit,
        )
        if more:
            response.headers["connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)
