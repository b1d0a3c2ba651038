"""The gateway: one public port for the whole platform.

Routes by `studyshare.contracts.routes.service_for_path` (and `/dev/...` to the mail catcher;
every other path to the portal when the portal is one of its upstreams),
serves a merged OpenAPI document at `/openapi.json`, Swagger UI at `/docs`, and its own
`/healthz`, `/readyz` (every upstream ready) and `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi.openapi.docs import get_swagger_ui_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from studyshare.contracts.routes import PORTAL, service_for_path
from studyshare.devstack.openapi import fetch_documents, merge_documents
from studyshare.devstack.problem import PROBLEM, problem_body
from studyshare.devstack.proxy import ReverseProxy, build_client, build_transport
from studyshare.devstack.settings import GatewaySettings
from studyshare.plumbing.logging import configure_logging, get_logger

log = get_logger(__name__)

MAIL_CATCHER = "mailcatcher"
OWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
_STATES = {"type": "object", "additionalProperties": {"type": "string"}}
_READY = {
    "type": "object",
    "properties": {"status": {"const": "ready"}, "services": _STATES},
    "required": ["status", "services"],
}
_NOT_READY = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "integer"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "services": _STATES,
        "not_ready": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["status", "title", "detail", "services", "not_ready"],
}


def _answer(description: str, schema: dict[str, Any], media_type: str = "application/json"):
    return {"description": description, "content": {media_type: {"schema": schema}}}


OWN_OPENAPI_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Gateway liveness",
            "tags": ["operations"],
            "responses": {
                "200": _answer(
                    "The gateway answers",
                    {
                        "type": "object",
                        "properties": {"status": {"const": "ok"}},
                        "required": ["status"],
                    },
                )
            },
        }
    },
    "/readyz": {
        "get": {
            "summary": "Every service is ready",
            "tags": ["operations"],
            "responses": {
                "200": _answer("Every service (and the mail catcher) is ready", _READY),
                "503": _answer(
                    "Some are not: `not_ready` names them", _NOT_READY, PROBLEM.decode()
                ),
            },
        }
    },
}


class Gateway:
    """ASGI app: the proxy for every routed path, a small Starlette app for the rest."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.upstreams = {name: url.rstrip("/") for name, url in settings.upstreams.items()}
        self.mail_url = settings.mail_url.rstrip("/")
        self.extra_routes = [
            (p.rstrip("/"), u.rstrip("/")) for p, u in settings.extra_routes.items()
        ]
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=5.0,
        )
        transport = build_transport(
            settings.upstream_transport,
            settings.max_connections,
            settings.max_keepalive_connections,
            settings.pool_shards,
        )
        self.client = build_client(transport, timeout)
        self.proxy = ReverseProxy(transport, timeout, self.route)
        self._openapi: tuple[float, dict[str, Any]] | None = None
        self.ops = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics),
                Route("/openapi.json", self.openapi),
                Route("/docs", self.docs),
            ],
            lifespan=self.lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OWN_PATHS:
            await self.proxy(scope, receive, send)
        else:
            await self.ops(scope, receive, send)

    def route(self, path: str) -> tuple[str, str | None] | None:
        """`(upstream name, base URL or None when it does not run here)` for `path`."""
        if path == "/dev" or path.startswith("/dev/"):
            return MAIL_CATCHER, self.mail_url or None
        for prefix, url in self.extra_routes:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, url
        service = service_for_path(path)
        if service is None:
            if PORTAL.name not in self.upstreams:
                return None
            service = PORTAL
        return service.name, self.upstreams.get(service.name)

    @asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        log.info("gateway.started", upstreams=self.upstreams, mail=self.mail_url)
        try:
            yield
        finally:
            await self.client.aclose()

    async def healthz(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _: Request) -> Response:
        """200 when every service's `/readyz` (and the mail catcher's `/healthz`) answers 200."""
        checks = {name: f"{base}/readyz" for name, base in self.upstreams.items()}
        if self.mail_url:
            checks[MAIL_CATCHER] = f"{self.mail_url}/healthz"
        results = await asyncio.gather(*(self._probe(url) for url in checks.values()))
        services = dict(zip(checks, results, strict=True))
        not_ready = sorted(name for name, state in services.items() if state != "ready")
        if not not_ready:
            return JSONResponse({"status": "ready", "services": services})
        body = problem_body(
            503,
            "Not ready",
            f"Not ready: {', '.join(not_ready)}",
            services=services,
            not_ready=not_ready,
        )
        return Response(body, status_code=503, media_type=PROBLEM.decode())

    async def _probe(self, url: str) -> str:
        try:
            response = await self.client.get(url, timeout=3.0)
        except httpx.HTTPError as exc:
            return f"unreachable ({type(exc).__name__})"
        return "ready" if response.status_code == 200 else f"HTTP {response.status_code}"

    async def metrics(self, _: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, _: Request) -> Response:
        now = time.monotonic()
        if self._openapi and now - self._openapi[0] < self.settings.openapi_cache_s:
            return JSONResponse(self._openapi[1])
        documents, missing = await fetch_documents(self.client, self.upstreams)
        merged = merge_documents(documents, own_paths=OWN_OPENAPI_PATHS, missing=missing)
        self._openapi = (now, merged)
        return JSONResponse(merged)

    async def docs(self, _: Request) -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="StudyShare API")


def create_app(settings: GatewaySettings | None = None) -> Gateway:
    return Gateway(settings or GatewaySettings())


def serve(settings: GatewaySettings) -> None:
    """Run the gateway until SIGTERM/SIGINT."""
    configure_logging("gateway", settings.log_level, settings.log_json)
    for chatty in ("httpx", "httpcore"):  # one line per proxied request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=False,  # the gateway is the edge: the peer address is the client
        server_header=False,  # upstream answers carry their own `server` and `date`
        date_header=False,
    )
