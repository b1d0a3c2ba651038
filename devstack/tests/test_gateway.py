"""The gateway (nginx and its Python app) against real upstream processes: proxying,
streaming, errors, OpenAPI, readiness, metrics."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from studyshare.plumbing.infra import free_port

from .conftest import Processes


@dataclass
class Stack:
    gateway: str
    identity: str
    share: str
    mail: str


@pytest.fixture(scope="module")
def upstreams(processes: Processes) -> tuple[str, str, str]:
    identity, share = processes.upstream("identity"), processes.upstream("share")
    mail, _ = processes.mailcatcher()
    return identity, share, mail


@pytest.fixture(scope="module")
def stack(processes: Processes, upstreams: tuple[str, str, str]) -> Stack:
    identity, share, mail = upstreams
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    routes = {"identity": identity, "share": share, "audit": down}
    gateway = processes.gateway(routes, mail)
    return Stack(gateway, identity, share, mail)


def test_proxies_method_path_query_and_headers(stack: Stack) -> None:
    response = httpx.put(
        f"{stack.gateway}/api/auth/echo/a%2Fb/c?x=1&y=%C3%A9",
        headers={"X-Correlation-ID": "cid-123", "X-Custom": "kept", "Connection": "close"},
        content=b"hello",
    )
    assert response.status_code == 200
    echo = response.json()
    assert echo["service"] == "identity"
    assert echo["method"] == "PUT"
    assert echo["path"] == "/api/auth/echo/a%2Fb/c"
    assert echo["query"] == "x=1&y=%C3%A9"
    assert echo["body_bytes"] == 5
    assert echo["headers"]["x-custom"] == "kept"
    assert echo["headers"]["x-correlation-id"] == "cid-123"
    assert echo["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert echo["headers"]["host"] == stack.identity.removeprefix("http://")
    assert response.headers.get_list("x-correlation-id") == ["cid-123"]


def test_correlation_id_is_made_up_when_missing(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway}/api/shares/echo/x")
    cid = response.headers["x-correlation-id"]
    assert str(uuid.UUID(cid)) == cid, "made up as a UUID, as the services make theirs"
    assert response.json()["headers"]["x-correlation-id"] == cid
    assert response.json()["service"] == "share"


def test_forwarded_for_is_appended(stack: Stack) -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    response = httpx.get(f"{stack.gateway}/api/auth/echo/x", headers=spoofed)
    headers = response.json()["headers"]
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == stack.gateway.removeprefix("http://")


def test_streams_a_large_upload(stack: Stack) -> None:
    payload = os.urandom(3 * 1024 * 1024)

    def chunks():
        for i in range(0, len(payload), 256 * 1024):
            yield payload[i : i + 256 * 1024]

    response = httpx.post(f"{stack.gateway}/api/shares/echo/upload", content=chunks(), timeout=30)
    assert response.status_code == 200
    assert response.json()["body_bytes"] == len(payload)
    assert response.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_streams_a_large_download(stack: Stack) -> None:
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", f"{stack.gateway}/api/auth/stream?chunks=80&size=65536") as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    expected = b"".join(bytes([i % 256]) * 65536 for i in range(80))
    assert size == len(expected)
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()


def test_upstream_problem_passes_through(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway}/api/auth/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_upstream_down_is_a_502_problem(stack: Stack) -> None:
    response = httpx.get(
        f"{stack.gateway}/api/audit/studies/1.2.3/log", headers={"X-Correlation-ID": "c-down"}
    )
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 502
    assert body["service"] == "audit"
    assert response.headers["x-correlation-id"] == "c-down"


def test_service_not_in_this_stack_is_a_503_problem(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway}/dicomweb/studies")
    assert response.status_code == 503
    assert response.json()["service"] == "study-store"


def test_unknown_path_is_a_404_problem(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway}/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_dev_mail_and_sms_reach_the_mail_catcher(stack: Stack) -> None:
    number = f"+32470{stack.gateway.rsplit(':', 1)[1]:0>6}"  # one per gateway under test
    sms = {"to": number, "text": "via the gateway", "sender": "StudyShare"}
    assert httpx.post(f"{stack.gateway}/dev/sms", json=sms).status_code == 201
    listed = httpx.get(f"{stack.gateway}/dev/sms", params={"to": number}).json()
    assert [s["text"] for s in listed] == ["via the gateway"]
    assert httpx.get(f"{stack.gateway}/dev/mail").status_code == 200


def test_openapi_is_merged_and_tolerates_a_service_down(stack: Stack) -> None:
    doc = httpx.get(f"{stack.gateway}/openapi.json").json()
    paths = doc["paths"]
    assert "/api/auth/echo/{rest}" in paths
    assert "/api/shares/echo/{rest}" in paths
    assert paths["/api/auth/echo/{rest}"]["x-service"] == "identity"
    assert set(paths) >= {"/healthz", "/readyz"}
    assert "/metrics" not in paths
    assert "audit" in doc["info"]["description"]
    schemas = doc["components"]["schemas"]
    # the two `Thing`s differ: the second one is renamed and its $ref follows
    assert "Thing" in schemas and "ShareThing" in schemas
    ref = paths["/api/shares/thing"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ref["schema"]["$ref"] == "#/components/schemas/ShareThing"
    assert "Echo" in schemas


def test_own_routes_answer_as_documented(stack: Stack) -> None:
    """Regression: /healthz and /readyz were documented without any response."""
    schema = schemathesis.openapi.from_url(f"{stack.gateway}/openapi.json")
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    for path, status in (("/healthz", 200), ("/readyz", 503)):  # audit is down in this stack
        case = schema[path]["GET"].Case()
        response = case.call(base_url=stack.gateway)
        assert response.status_code == status
        case.validate_response(response, checks=checks)


def test_docs_page(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway}/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text


def test_readyz_names_the_service_that_is_down(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway}/readyz")
    assert response.status_code == 503
    assert response.json()["not_ready"] == ["audit"]
    assert httpx.get(f"{stack.gateway}/healthz").status_code == 200


def test_readyz_when_every_service_answers(processes: Processes, stack: Stack) -> None:
    gateway = processes.gateway({"identity": stack.identity, "share": stack.share}, stack.mail)
    response = httpx.get(f"{gateway}/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["services"] == {
        "identity": "ready",
        "share": "ready",
        "mailcatcher": "ready",
    }


def test_slow_upstream_is_a_504_problem(processes: Processes, stack: Stack) -> None:
    gateway = processes.gateway({"identity": stack.identity}, read_timeout_s="0.5")
    response = httpx.get(f"{gateway}/api/auth/slow?seconds=2")
    assert response.status_code == 504
    assert response.json()["service"] == "identity"
    assert httpx.get(f"{gateway}/api/auth/slow?seconds=0.1").status_code == 200


def test_metrics_count_proxied_requests(stack: Stack) -> None:
    httpx.get(f"{stack.gateway}/api/auth/echo/m")
    text = httpx.get(f"{stack.gateway}/metrics").text
    assert 'studyshare_gateway_requests_total{status="200",upstream="identity"}' in text


def test_hop_by_hop_and_proxy_headers_are_not_forwarded(stack: Stack) -> None:
    headers = {
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Upgrade": "h2c",
        "Proxy-Connection": "keep-alive",
        "Proxy-Authorization": "Basic eDp5",
        "X-Under_Score": "kept",
    }
    echo = httpx.get(f"{stack.gateway}/api/auth/echo/hop", headers=headers).json()["headers"]
    assert not {"keep-alive", "te", "upgrade", "proxy-connection", "proxy-authorization"} & set(
        echo
    )
    assert echo["x-under_score"] == "kept"


def test_nginx_ends_with_the_gateway(processes: Processes, stack: Stack) -> None:
    """kill -9 of the gateway's process: its nginx (a child) stops too and frees the port."""
    run_dir = processes.logs / "gateway-run"
    gateway = processes.gateway({"identity": stack.identity}, gateway_run_dir=str(run_dir))
    assert httpx.get(f"{gateway}/api/auth/echo/x").status_code == 200
    master = int((run_dir / "nginx.pid").read_text())
    processes.started[-1].kill()
    deadline = time.monotonic() + 15
    while _running(master) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(master)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gateway}/healthz")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
