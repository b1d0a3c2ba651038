"""Traces are off by default and exported over OTLP/HTTP when an endpoint is configured."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from studyshare.plumbing import tracing
from studyshare.plumbing.eventstore import to_document
from studyshare.plumbing.settings import ServiceSettings

from .conftest import otp_failures


def test_tracing_is_off_by_default() -> None:
    settings = ServiceSettings(environment="test")
    assert settings.otel_exporter_otlp_endpoint is None
    assert tracing.configure_tracing(settings, "api") is False
    assert not tracing.enabled()
    assert tracing.current_carrier() is None
    envelope = otp_failures("bkt_off", 1)[0]
    assert "trace" not in to_document(envelope, envelope.occurred_at, tracing.current_carrier())


def test_the_trace_context_of_a_message_is_read_from_its_headers() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for headers in ([("traceparent", parent.encode())], {"traceparent": parent.encode()}):
        context = tracing.context_from_headers(headers)
        assert tracing.carrier_headers(context) == [("traceparent", parent.encode())]
    assert tracing.context_from_headers([("event_type", b"OTPFailed")]) is None
    assert tracing.context_from_headers(None) is None


def test_spans_end_with_their_block_and_a_failed_block_marks_them_failed() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with pytest.raises(ConnectionError), tracing.ending([tracer.start_span("a")]):
        raise ConnectionError("the broker is gone")
    with tracing.ending([tracer.start_span("b"), tracer.start_span("c")]):
        pass
    ended = {span.name: span for span in exporter.get_finished_spans()}
    assert sorted(ended) == ["a", "b", "c"]
    assert ended["a"].status.status_code is StatusCode.ERROR
    assert ended["a"].status.description == "ConnectionError"
    assert [event.name for event in ended["a"].events] == ["exception"]
    assert {ended[name].status.status_code for name in "bc"} == {StatusCode.UNSET}


SPAN_IN_A_PROCESS = textwrap.dedent(
    """
    import sys
    from studyshare.plumbing import tracing
    from studyshare.plumbing.settings import ServiceSettings

    settings = ServiceSettings(
        environment="test", service_name="share", otel_exporter_otlp_endpoint=sys.argv[1]
    )
    assert tracing.configure_tracing(settings, "relay")
    with tracing.tracer().start_as_current_span("share.events publish"):
        assert tracing.current_carrier()["traceparent"].startswith("00-")
    tracing.flush()
    """
)


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_configured() -> None:
    received: list[ExportTraceServiceRequest] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        out = subprocess.run(
            [sys.executable, "-c", SPAN_IN_A_PROCESS, endpoint],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
    finally:
        server.shutdown()
    spans = [
        (resource_spans.resource, span)
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert [span.name for _, span in spans] == ["share.events publish"]
    attributes = {a.key: a.value.string_value for a in spans[0][0].attributes}
    assert attributes["service.name"] == "studyshare-share"
    assert attributes["service.instance.role"] == "relay"
