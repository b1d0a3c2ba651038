"""The reverse proxy over the shared client's connection pool, bodies streamed both ways.

Pure ASGI on purpose: the gateway is benchmarked in requests/s, so the hot path builds no
framework request/response objects and logs nothing unless something fails.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import httpx
from prometheus_client import Counter, Histogram
from starlette.types import Receive, Scope, Send

from studyshare.devstack.problem import send_problem
from studyshare.devstack.upstream import HttpToolsTransport
from studyshare.plumbing.logging import get_logger, safe_correlation_id

log = get_logger(__name__)

#: headers that describe one connection, never forwarded (RFC 9110 section 7.6.1)
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
CORRELATION = b"x-correlation-id"
FORWARDED_FOR = b"x-forwarded-for"
#: the gateway is the edge: it sets these itself, whatever the client claims
#: (and `expect`: uvicorn already answered the client's 100-continue)
DROP_REQUEST = HOP_BY_HOP | {
    b"host",
    b"expect",
    CORRELATION,
    FORWARDED_FOR,
    b"x-forwarded-proto",
    b"x-forwarded-host",
}
DROP_RESPONSE = HOP_BY_HOP | {CORRELATION}

REQUESTS = Counter(
    "studyshare_gateway_requests_total", "Requests through the gateway", ["upstream", "status"]
)
LATENCY = Histogram(
    "studyshare_gateway_upstream_seconds", "Time to the upstream's response head", ["upstream"]
)

#: `path -> (upstream name, base URL)`, or None when nothing answers that path
Router = Callable[[str], "tuple[str, str | None] | None"]


def _drop_listed(headers: list[tuple[bytes, bytes]], drop: frozenset[bytes]) -> frozenset[bytes]:
    """`drop` plus the headers a `Connection` header names as hop-by-hop."""
    extra = [
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    ]
    return drop | frozenset(extra) if extra else drop


class ShardedTransport(httpx.AsyncBaseTransport):
    """Spreads requests round-robin over several small connection pools.

    httpcore's pool scans all of its connections (quadratically) on every request and every
    response close, so one pool of 64 busy connections costs more CPU than the proxying
    itself; many small pools keep that scan short (2-3x the requests/s of one pool at 32 and
    more concurrent clients). Only used with `upstream_transport="httpcore"`.
    """

    def __init__(self, shards: int, limits: httpx.Limits) -> None:
        def part(value: int | None) -> int | None:
            return None if value is None else max(1, -(-value // shards))

        small = httpx.Limits(
            max_connections=part(limits.max_connections),
            max_keepalive_connections=part(limits.max_keepalive_connections),
            keepalive_expiry=limits.keepalive_expiry,
        )
        self.shards = [httpx.AsyncHTTPTransport(limits=small) for _ in range(shards)]
        self._next = itertools.cycle(self.shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await next(self._next).handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


def build_transport(
    kind: str = "httptools",
    max_connections: int = 1000,
    max_keepalive_connections: int = 200,
    shards: int = 32,
) -> httpx.AsyncBaseTransport:
    """`httptools` (lean, the default) or `httpcore` (httpx's own, sharded)."""
    if kind == "httptools":
        return HttpToolsTransport(max_idle_per_origin=max_keepalive_connections)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=30.0,
    )
    return ShardedTransport(shards, limits)


def build_client(transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The shared client (over the proxy's pools): no redirects, no proxies from the env."""
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )


class ReverseProxy:
    """Forwards a request to the upstream the router names and streams the answer back.

    With the lean transport it writes the request head itself and builds no httpx objects;
    with any other httpx transport it goes through `httpx.Request`. Either way it skips the
    client's cookie jar, redirect and auth handling, which a proxy has no use for."""

    def __init__(
        self, transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout, router: Router
    ) -> None:
        self.transport = transport
        self.lean = transport if isinstance(transport, HttpToolsTransport) else None
        self.timeouts = timeout.as_dict()
        self.router = router
        self._origins: dict[str, tuple[tuple[str, int], bytes, bytes]] = {}
        self._metrics: dict[tuple[str, int], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        cid = forwarded = host = b""
        length: bytes | None = None
        streamed = False
        for name, value in raw_headers:
            lname = name.lower()
            if lname == CORRELATION:
                cid = (safe_correlation_id(value.decode("latin-1")) or "").encode()
            elif lname == FORWARDED_FOR:
                forwarded = value
            elif lname == b"host":
                host = value
            elif lname == b"content-length":
                length = value
            elif lname == b"transfer-encoding":
                streamed = True
        if not cid:
            cid = str(uuid.uuid4()).encode()
        echo = [(CORRELATION, cid)]

        target = self.router(path)
        if target is None:
            await send_problem(send, 404, "Not Found", f"No service answers {path}", echo)
            return
        name, base = target
        if base is None:
            detail = f"The {name} service is not running in this stack"
            await send_problem(send, 503, "Service Unavailable", detail, echo, service=name)
            return

        drop = _drop_listed(raw_headers, DROP_REQUEST)
        headers = [(k, v) for k, v in raw_headers if k.lower() not in drop]
        client = scope.get("client")
        client_ip = client[0].encode() if client else b"unknown"
        headers.append((FORWARDED_FOR, forwarded + b", " + client_ip if forwarded else client_ip))
        headers.append((CORRELATION, cid))
        headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        if host:
            headers.append((b"x-forwarded-host", host))
        has_body = streamed or (length is not None and length != b"0")
        raw_path = scope.get("raw_path") or quote(path).encode()
        query = scope["query_string"]
        method: str = scope["method"]

        started = time.perf_counter()
        try:
            if self.lean is not None:
                key, host_header, prefix = self._origin(base)
                headers.append((b"host", host_header))
                if has_body and length is None:
                    headers.append((b"transfer-encoding", b"chunked"))
                request_target = prefix + raw_path + (b"?" + query if query else b"")
                head = b"%b %b HTTP/1.1\r\n%b\r\n\r\n" % (
                    method.encode(),
                    request_target,
                    b"\r\n".join(k + b": " + v for k, v in headers),
                )
                status, out_headers, stream = await self.lean.send(
                    key,
                    head,
                    _body(receive) if has_body else None,
                    chunked=has_body and length is None,
                    is_head=method == "HEAD",
                    replayable=not has_body,
                    timeouts=self.timeouts,
                )
            else:
                url = base + raw_path.decode("latin-1")
                if query:
                    url += "?" + query.decode("latin-1")
                request = httpx.Request(
                    method,
                    url,
                    headers=headers,
                    content=_body(receive) if has_body else None,
                    extensions={"timeout": self.timeouts},
                )
                response = await self.transport.handle_async_request(request)
                status, out_headers = response.status_code, response.headers.raw
                stream = response.stream  # type: ignore[assignment]
        except httpx.TimeoutException as exc:
            code = 503 if isinstance(exc, httpx.PoolTimeout) else 504
            self._count(name, code)
            log.warning("gateway.upstream_timeout", upstream=name, error=type(exc).__name__)
            await send_problem(
                send,
                code,
                "Upstream timeout",
                f"The {name} service did not answer in time",
                echo,
                service=name,
            )
            return
        except httpx.TransportError as exc:
            self._count(name, 502)
            log.warning("gateway.upstream_unreachable", upstream=name, error=type(exc).__name__)
            await send_problem(
                send, 502, "Bad Gateway", f"The {name} service is unreachable", echo, service=name
            )
            return
        self._observe(name, time.perf_counter() - started)
        self._count(name, status)
        try:
            drop = _drop_listed(out_headers, DROP_RESPONSE)
            out = [(k, v) for k, v in out_headers if k.lower() not in drop]
            out.append((CORRELATION, cid))
            await send({"type": "http.response.start", "status": status, "headers": out})
            async for chunk in stream:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.TransportError as exc:
            # the head is already sent: all we can do is cut the response short
            log.warning("gateway.upstream_broke", upstream=name, error=type(exc).__name__)
            raise
        finally:
            await stream.aclose()

    def _origin(self, base: str) -> tuple[tuple[str, int], bytes, bytes]:
        """`((host, port), Host header, path prefix)` of an upstream base URL, parsed once."""
        origin = self._origins.get(base)
        if origin is None:
            url = httpx.URL(base)
            host_header = url.netloc
            origin = ((url.host, url.port or 80), host_header, url.raw_path.rstrip(b"/"))
            self._origins[base] = origin
        return origin

    def _count(self, upstream: str, status: int) -> None:
        key = (upstream, status)
        child = self._metrics.get(key)
        if child is None:
            child = self._metrics[key] = REQUESTS.labels(upstream, str(status))
        child.inc()

    def _observe(self, upstream: str, seconds: float) -> None:
        child = self._latency.get(upstream)
        if child is None:
            child = self._latency[upstream] = LATENCY.labels(upstream)
        child.observe(seconds)


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return
