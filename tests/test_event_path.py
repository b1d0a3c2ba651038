"""The whole event path: HTTP command on one service -> event stored -> relayed to Kafka ->
consumed by another service -> its projection updated, with one correlation id throughout."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from studyshare.devstack.platform import LocalPlatform


def wait_for(check, timeout: float = 60.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def log_lines_with(platform: LocalPlatform, process: str, correlation_id: str) -> list[dict]:
    path = platform.logs / f"{process}.log"
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if correlation_id in line and line.lstrip().startswith("{"):
            found.append(json.loads(line))
    return found


def test_a_command_reaches_another_services_projection_with_one_correlation_id(
    platform: LocalPlatform, gateway: httpx.Client, service_desk: dict[str, str]
):
    correlation_id = f"e2e-{uuid.uuid4()}"
    created = gateway.post(
        "/api/departments",
        json={"name": f"Radiology {correlation_id[-6:]}", "country": "be"},
        headers={**service_desk, "X-Correlation-ID": correlation_id},
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-correlation-id"] == correlation_id
    department_id = created.json()["department_id"]

    def in_audit_log():
        page = gateway.get(
            "/api/audit/log",
            params={"event_type": "DepartmentCreated", "limit": 500},
            headers=service_desk,
        )
        assert page.status_code == 200, page.text
        return [e for e in page.json()["items"] if department_id in json.dumps(e)]

    entries = wait_for(in_audit_log, timeout=90)
    assert entries, "audit's projection shows the department created through identity"

    api_lines = log_lines_with(platform, "identity-api", correlation_id)
    assert any(line.get("correlation_id") == correlation_id for line in api_lines)
    applied = wait_for(
        lambda: [
            line
            for line in log_lines_with(platform, "audit-worker", correlation_id)
            if line.get("event") == "event.applied"
            and line.get("event_type") == "DepartmentCreated"
        ],
        timeout=30,
    )
    assert applied, "the audit worker logged the event under the same correlation id"
    assert all(line["correlation_id"] == correlation_id for line in applied)
