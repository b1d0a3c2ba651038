"""OpenTelemetry traces: one trace from an HTTP request through the relay to every consumer.

Off by default. With `STUDYSHARE_OTEL_EXPORTER_OTLP_ENDPOINT` set (an OTLP/HTTP collector, e.g.
`http://otel-collector.monitoring:4318`) each process exports its spans there, named after the
service (`studyshare-<service>`) and the process (`api`, `relay`, `worker`, `replay`).

How the context travels:

- the FastAPI app (`plumbing.http.create_app`), httpx, pymongo and aiokafka are instrumented;
- a command handler's append stores the current trace context with each event in the outbox
  (`trace` beside the envelope, never in the envelope itself: `eventstore.to_document`);
- the relay starts a producer span per event as a child of that stored context and sends the
  span's `traceparent` in the Kafka message headers (`relay.OutboxRelay`);
- a worker starts a consumer span per event as a child of the context in the message headers,
  around the batch's transaction (`worker.worker_app`).

A process without an exporter still carries the context it is handed (the no-op tracer keeps
the parent's span context), so a relay without tracing passes the API's trace on unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from studyshare.plumbing.settings import ServiceSettings

TRACER = "studyshare.plumbing"
#: paths the FastAPI instrumentation leaves alone (probes and scrapes every few seconds)
UNTRACED_URLS = "/healthz,/readyz,/metrics"

_state: dict[str, Any] = {"provider": None}


def configure_tracing(
    settings: ServiceSettings, process: str, exporter: SpanExporter | None = None
) -> bool:
    """Install the process's tracer provider and the library instrumentations when an OTLP
    endpoint is configured or `exporter` is given (tests: an in-memory exporter, undone by
    `reset_tracing`). Once per process; returns whether tracing is on."""
    if _state["provider"] is not None:
        return True
    in_test = exporter is not None
    if exporter is None:
        if not settings.otel_exporter_otlp_endpoint:
            return False
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces",
            timeout=settings.otel_exporter_otlp_timeout_s,
        )
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": f"studyshare-{settings.service_name}",
                "service.namespace": "studyshare",
                "service.instance.role": process,
                "deployment.environment.name": settings.environment,
            }
        ),
        sampler=ParentBased(TraceIdRatioBased(settings.otel_traces_sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if not in_test:  # the global provider cannot be replaced: a test's stays our own
        trace.set_tracer_provider(provider)
    _state["provider"] = provider
    instrument_libraries(provider)
    return True


def _instrumentors() -> list[Any]:
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    return [PymongoInstrumentor(), HTTPXClientInstrumentor(), AIOKafkaInstrumentor()]


def instrument_libraries(provider: TracerProvider) -> None:
    """pymongo, httpx and aiokafka for the whole process (FastAPI per app, in create_app)."""
    for instrumentor in _instrumentors():
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)


def reset_tracing() -> None:
    """Undo `configure_tracing` with a test's exporter: flush, stop, uninstrument."""
    provider = _state["provider"]
    if provider is None:
        return
    for instrumentor in _instrumentors():
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    provider.shutdown()
    _state["provider"] = None


def enabled() -> bool:
    return _state["provider"] is not None


def instrument_app(app: Any) -> None:
    """Trace a FastAPI app's requests when tracing is on (probes and scrapes excluded)."""
    if not enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_state["provider"], excluded_urls=UNTRACED_URLS
    )


def flush(timeout_ms: int = 5000) -> None:
    provider = _state["provider"]
    if provider is not None:
        provider.force_flush(timeout_ms)


def tracer() -> trace.Tracer:
    """Our tracer: the configured provider's, else the global (no-op) one."""
    provider = _state["provider"]
    return provider.get_tracer(TRACER) if provider is not None else trace.get_tracer(TRACER)


def current_carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (`traceparent`, `tracestate`), or None
    outside a trace: stored with each appended event."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def context_from_carrier(carrier: Mapping[str, str] | None) -> Context | None:
    return propagate.extract(carrier) if carrier else None


def carrier_headers(span_context: Context) -> list[tuple[str, bytes]]:
    """W3C trace headers for a Kafka message, from a context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=span_context)
    return [(k, v.encode()) for k, v in carrier.items()]


def context_from_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None):
    """The trace context a Kafka message carries in its headers, or None."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    carrier = {
        k: (v.decode() if isinstance(v, bytes | bytearray) else str(v))
        for k, v in items
        if k in ("traceparent", "tracestate")
    }
    return propagate.extract(carrier) if carrier else None


def messaging_attributes(topic: str, operation: str, **extra: Any) -> dict[str, Any]:
    """OpenTelemetry messaging attributes of a Kafka span, plus ours (`studyshare.*`)."""
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
    }
    attributes.update({k: v for k, v in extra.items() if v is not None})
    return attributes


@contextmanager
def ending(spans: Sequence[trace.Span]) -> Iterator[None]:
    """End `spans` when the block ends; if it raised, each records the error."""
    try:
        yield
    except BaseException as error:
        for span in spans:
            span.record_exception(error)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        for span in spans:
            span.end()


def producer_span(
    event: Mapping[str, Any], partition: int, headers: list[tuple[str, bytes]]
) -> trace.Span | None:
    """For a stored event (an outbox document) appended inside a trace: a producer span, child
    of the context stored with it, whose own context is added to `headers`."""
    parent = context_from_carrier(event.get("trace"))
    if parent is None:
        return None
    topic = event["topic"]
    span = tracer().start_span(
        f"{topic} publish",
        context=parent,
        kind=trace.SpanKind.PRODUCER,
        attributes=messaging_attributes(
            topic,
            "publish",
            **{
                "messaging.destination.partition.id": str(partition),
                "messaging.kafka.message.key": event["aggregate_id"],
                "messaging.message.id": event["_id"],
                "studyshare.event_type": event["event_type"],
            },
        ),
    )
    headers.extend(carrier_headers(trace.set_span_in_context(span)))
    return span
