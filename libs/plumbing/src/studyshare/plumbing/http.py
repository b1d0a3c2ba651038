"""The FastAPI application every service starts from: correlation ids, problem+json errors,
request bodies bounded per route, health, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from studyshare.contracts.routes import body_limits_of
from studyshare.plumbing import propagation, tracing
from studyshare.plumbing.auth import JWKSVerifier
from studyshare.plumbing.bodylimit import BodyLimitMiddleware, BodyLimits
from studyshare.plumbing.errors import (
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    RuleViolation,
    TooLarge,
    TooManyAttempts,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from studyshare.plumbing.hot import HotRoutes
from studyshare.plumbing.internal import InternalClient
from studyshare.plumbing.kafka_connection import KafkaConnection, kafka_connection
from studyshare.plumbing.logging import (
    bind_correlation_id,
    clear_context,
    current_correlation_id,
    get_logger,
    safe_correlation_id,
)
from studyshare.plumbing.metrics import record_readiness
from studyshare.plumbing.revocation_feed import RevocationFeed
from studyshare.plumbing.revocations import SessionRevocations
from studyshare.plumbing.session_feed import SessionEndFeed, follower_id
from studyshare.plumbing.settings import ServiceSettings

log = get_logger(__name__)

PROBLEM = "application/problem+json"
REQUESTS = Counter("studyshare_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("studyshare_http_request_seconds", "HTTP latency", ["method", "route"])

ReadinessCheck = Callable[[], Awaitable[None]]
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
#: an answer names patients and carries their images: no browser (a shared workstation's disk)
#: or proxy keeps one, unless its route says otherwise (identity's public keys)
NO_STORE = (b"cache-control", b"no-store")


def problem(status: int, title: str, detail: str, rule: str | None = None, **extra: Any):
    body: dict[str, Any] = {
        "type": "about:blank",
        "status": status,
        "title": title,
        "detail": detail,
    }
    if rule:
        body["rule"] = rule
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


Statuses = Mapping[type[RuleViolation], int]

#: The HTTP status each kind of refusal (`studyshare.plumbing.errors`) answers with. A service
#: adds its own rules' statuses (`create_app(statuses=...)`, from its `entrypoints/errors.py`).
STATUS: Statuses = MappingProxyType(
    {
        RuleViolation: 422,
        NotFound: 404,
        Forbidden: 403,
        Unauthorized: 401,
        Conflict: 409,
        Locked: 423,
        TooManyAttempts: 429,
        TooLarge: 413,
        UnsupportedMedia: 415,
        Unavailable: 503,
    }
)


def status_of(refusal: RuleViolation | type[RuleViolation], statuses: Statuses = STATUS) -> int:
    """The HTTP status of a refusal: that of the first class of its MRO named in `statuses`
    (a service's own) or in `STATUS` (the kinds)."""
    cls = refusal if isinstance(refusal, type) else type(refusal)
    for each in cls.__mro__:
        status = statuses.get(each) or STATUS.get(each)
        if status is not None:
            return status
    return STATUS[RuleViolation]


def refused(refusal: RuleViolation, statuses: Statuses = STATUS, **extra: Any) -> JSONResponse:
    """The problem+json answer to a refusal: its status, title, detail and rule (and `extra`);
    how long to wait as `Retry-After` when the refusal says."""
    response = problem(
        status_of(refusal, statuses), refusal.title, refusal.detail, refusal.rule, **extra
    )
    if isinstance(refusal, TooManyAttempts) and refusal.retry_after_s is not None:
        response.headers["retry-after"] = str(refusal.retry_after_s)
    return response


#: methods whose successful, fast answers are logged at debug level only
READS = frozenset({"GET", "HEAD"})


class CorrelationMiddleware:
    """Binds `X-Correlation-ID` (or a new one, unless the client's is in the safe format of
    `plumbing.logging.SAFE_CORRELATION_ID`) to the request's logs and events, echoes it back,
    and records request metrics. Pure ASGI, so it costs little on hot paths.

    Every request is counted and timed; the `request.handled` line is written at info level
    for commands (any method but GET and HEAD), refusals, failures and slow requests (`slow_s`),
    at debug level for successful reads (a log line per read cost about a tenth of a WADO-RS
    metadata request; reads of studies are in the study logging anyway)."""

    def __init__(self, app: ASGIApp, slow_s: float = 1.0) -> None:
        self.app = app
        self.slow_s = slow_s
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = self.bind(scope)
        await self.run(self.app, scope, receive, send, cid, time.perf_counter())

    @staticmethod
    def bind(scope: Scope) -> str:
        """Bind the request's correlation id (or a new one) to the logs; return it."""
        cid = None
        for name, value in scope.get("headers") or ():
            if name == b"x-correlation-id":
                cid = safe_correlation_id(value.decode("latin-1"))
                break
        cid = cid or str(uuid.uuid4())
        clear_context()
        bind_correlation_id(cid)
        return cid

    async def run(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, cid: str, started: float
    ) -> None:
        """Run `app` for the request, echo the correlation id, count, time and log it; say
        whether what the command narrowed reached every follower (`plumbing.propagation`)."""
        echo = (b"x-correlation-id", cid.encode("latin-1"))
        status = 500
        propagated = propagation.begin()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [echo]
                if not any(name == b"cache-control" for name, _ in message.get("headers", ())):
                    extra.append(NO_STORE)
                if (said := propagation.header(propagated)) is not None:
                    extra.append(said)
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            count, latency = self._children(scope["method"], template, status)
            count.inc()
            latency.observe(elapsed)
            if template not in QUIET_ROUTES:
                quiet = scope["method"] in READS and status < 400 and elapsed < self.slow_s
                line = log.debug if quiet else log.info
                line(
                    "request.handled",
                    method=scope["method"],
                    route=template,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )

    def _children(self, method: str, template: str, status: int) -> tuple[Any, Any]:
        """The metric children of one (method, route, status), looked up once."""
        key = (method, template, status)
        children = self._metrics.get(key)
        if children is None:
            children = (
                REQUESTS.labels(method, template, status),
                LATENCY.labels(method, template),
            )
            self._metrics[key] = children
        return children


class ServiceApp(FastAPI):
    """FastAPI, with hot routes (`studyshare.plumbing.hot`) tried before the whole stack."""

    hot: HotRoutes | None = None
    correlation: CorrelationMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot is not None and scope["type"] == "http":
            found = self.hot.match(scope)
            if found is not None:
                started = time.perf_counter()
                cid = CorrelationMiddleware.bind(scope)
                scope["app"] = self
                response = await self.hot.attempt(*found, scope, receive)
                if response is not None and self.correlation is not None:
                    await self.correlation.run(response, scope, receive, send, cid, started)
                    return
        await super().__call__(scope, receive, send)


def health_router(checks: Sequence[ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: broker and database answer, ended sessions are known",
        description="503 with the reason until every check passes: the broker and the "
        "database answer and, where the service follows it, the feed of ended sessions has "
        "caught up (a process that is not ready would still accept a logged-out token).",
    )
    async def readyz() -> Response:
        try:
            await asyncio.wait_for(asyncio.gather(*(check() for check in checks)), 3)
        except Exception as exc:
            record_readiness(False)
            return problem(503, "Not ready", str(exc) or type(exc).__name__)
        record_readiness(True)
        return JSONResponse({"status": "ready"})

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter],
    lifespan: Callable[[FastAPI], Any] | None = None,
    readiness: Sequence[ReadinessCheck] = (),
    description: str = "",
    body_limits: Mapping[tuple[str, str], int] | None = None,
    statuses: Statuses = STATUS,
) -> FastAPI:
    """The service's app. Request bodies are bounded (`plumbing.bodylimit`): by
    `settings.http_body_max_bytes`, and for the routes `(method, path template)` of
    `studyshare.contracts.routes.BODY_LIMITS` (overridden by `body_limits`) by their own.
    A refusal answers with the status of its kind (`STATUS`), or of its rule in `statuses`."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        revocations, feed, ends = None, None, None
        if settings.session_revocation_feed:
            revocations = SessionRevocations(settings.session_revocation_keep_s)
            feed = RevocationFeed(
                settings.kafka,
                revocations,
                client_id=f"{settings.service_name}-revocations",
            )
            feed.start()
            if settings.identity_internal_url:
                ends = SessionEndFeed(
                    InternalClient.for_settings(settings, settings.identity_internal_url),
                    revocations,
                    follower=follower_id(settings.service_name),
                    lease_s=settings.session_lease_s,
                    wait_s=settings.session_poll_wait_s,
                )
                ends.start()
        app.state.verifier = JWKSVerifier(
            settings.jwks_url,
            settings.jwks_cache_seconds,
            revocations=revocations,
            available=(lambda: ends.fresh) if ends is not None else None,
        )
        app.state.revocation_feed = feed
        app.state.session_feed = ends
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            if ends is not None:
                await ends.stop()
            if feed is not None:
                await feed.stop()

    app = ServiceApp(title=title, description=description, version="1.0.0", lifespan=run)
    limits = body_limits_of(settings.service_name) | dict(body_limits or {})
    app.add_middleware(  # inside the correlation middleware: refusals are counted and logged
        BodyLimitMiddleware, limits=BodyLimits(settings.http_body_max_bytes, limits)
    )
    app.add_middleware(CorrelationMiddleware)

    @app.exception_handler(RuleViolation)
    async def rule_violation(request: Request, exc: RuleViolation) -> Response:
        response = refused(exc, statuses)
        log.info(
            "request.refused", rule=exc.rule, status=response.status_code, path=request.url.path
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem(422, "Invalid request", detail, "InvalidRequest", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = problem(exc.status_code, str(exc.detail), str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. `Allow` on 405 (RFC 9110)
        return response

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        """A bug: the server logs it with its traceback; the caller gets a problem, as
        documented, without the exception's text (it may hold data)."""
        cid = current_correlation_id()
        return problem(500, "Internal error", f"Unexpected error (correlation id {cid})")

    for router in routers:
        app.include_router(router)

    async def revocations_ready() -> None:
        feed = getattr(app.state, "revocation_feed", None)
        if feed is not None:
            await feed.ready()
        ends = getattr(app.state, "session_feed", None)
        if ends is not None:
            await ends.ready()

    app.include_router(health_router([*readiness, revocations_ready]))
    install_problem_openapi(app)
    tracing.instrument_app(app)
    hot = HotRoutes(app.routes)
    if hot and settings.hot_routes:
        app.hot = hot
        app.correlation = CorrelationMiddleware(app)
    return app


def install_problem_openapi(app: FastAPI) -> None:
    """Document refusals as they are answered: every 4xx/5xx, and a `default` response, is
    `application/problem+json` with the `Problem` schema (FastAPI would say `application/json`
    and its own validation-error shape)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        problem_content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                for status, response in responses.items():
                    if status != "default" and int(status) >= 400:
                        response["content"] = problem_content
                responses.setdefault(
                    "default", {"description": "Refused (problem+json)", "content": problem_content}
                )
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def mongo_ready(db) -> ReadinessCheck:
    async def check() -> None:
        await db.command("ping")

    return check


def kafka_ready(bootstrap: str | KafkaConnection) -> ReadinessCheck:
    """The broker answers a metadata request (cached for two seconds)."""
    state = {"ok_at": 0.0}
    options = kafka_connection(bootstrap).client_options()

    async def check() -> None:
        if time.monotonic() - state["ok_at"] < 2:
            return
        from aiokafka import AIOKafkaClient

        client = AIOKafkaClient(**options, request_timeout_ms=2000)
        try:
            await client.bootstrap()
        finally:
            await client.close()
        state["ok_at"] = time.monotonic()

    return check


class Problem(BaseModel):
    """An RFC 9457 problem; `rule` names the broken domain rule."""

    type: str = "about:blank"
    status: int
    title: str
    detail: str
    rule: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem+json refusals."""
    return {s: {"description": "Refused"} for s in statuses}
