"""The demo loader is tolerant: services that refuse or are missing give warnings, not errors."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from studyshare.devstack.demo import ADMIN, PHYSICIANS, STUDIES, load_demo
from studyshare.plumbing.infra import free_port

from .conftest import Processes, clean_env


def test_demo_without_identity_warns_and_returns_no_logins(processes: Processes) -> None:
    gateway = processes.gateway({})  # no service at all: every call is a 503 problem
    assert load_demo(gateway, "servicedesk", "x", timeout=5) == []


def test_demo_with_an_identity_that_refuses_logins(processes: Processes) -> None:
    identity = processes.upstream("identity")  # answers 404 on /api/auth/login
    gateway = processes.gateway({"identity": identity})
    assert load_demo(gateway, "servicedesk", "x", timeout=5) == []


def test_demo_walks_the_public_routes(processes: Processes) -> None:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).parent / "fake_api.py"), str(port)]
    processes.start("fake-api", argv, port, clean_env())
    fake = f"http://127.0.0.1:{port}"
    gateway = processes.gateway({"identity": fake, "study-store": fake})

    logins = load_demo(gateway, "servicedesk", "x", timeout=5)

    assert [role for role, _, _ in logins] == [
        "department admin",
        "physician",
        "physician",
        "patient",
    ]
    # the clear number (the patient types it), not its reference id; a revoked one, or one
    # the study store cannot show, is not offered: a new one is issued
    assert logins[-1][1] == "REF-DEMO-1"
    calls = httpx.get(f"{gateway}/api/auth/_calls").json()
    issued = [c for c in calls if c["path"].endswith("/reference-numbers")]
    assert [c["method"] for c in issued] == ["POST"]
    created = [c["username"] for c in calls if c["path"] == "/api/users"]
    assert created == [ADMIN["username"], *(p["username"] for p in PHYSICIANS)]
    uploads = [c for c in calls if c["path"] == "/dicomweb/studies"]
    assert [u["studies"] for u in uploads] == [[s.study_uid] for s in STUDIES]
    assert all(u["instances"] == 2 for u in uploads)
    (group,) = [c["body"] for c in calls if c["path"] == "/api/groups"]
    assert group["member_ids"] == [f"usr_{p['username']}" for p in PHYSICIANS]
    (department,) = [c["body"] for c in calls if c["path"] == "/api/departments"]
    assert department["name"] == "Radiology (demo)"

    # a second run logs into the existing accounts instead of creating them again
    load_demo(gateway, "servicedesk", "x", timeout=5)
    calls = httpx.get(f"{gateway}/api/auth/_calls").json()
    assert len([c for c in calls if c["path"] == "/api/users"]) == 3
    assert len([c for c in calls if c["path"] == "/api/groups"]) == 1
