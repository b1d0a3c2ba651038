"""LocalPlatform with real broker, database, mail catcher and gateway (no services)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from studyshare.contracts.routes import SERVICES
from studyshare.devstack.platform import LocalPlatform, PlatformError, available_services

pytestmark = pytest.mark.infra


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_starts_infra_mailcatcher_gateway_and_leaves_nothing_running(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path, services=[], ready_timeout=60)
    with platform:
        pids = platform.pids()
        assert set(pids) == {"broker", "database", "mailcatcher", "gateway"}
        assert all(_running(pid) for pid in pids.values())
        ready = httpx.get(f"{platform.gateway_url}/readyz")
        assert ready.status_code == 200
        assert ready.json()["services"] == {"mailcatcher": "ready"}
        sms = {"to": "+32470111222", "text": "hello"}
        assert httpx.post(f"{platform.gateway_url}/dev/sms", json=sms).status_code == 201

        platform.restart("gateway")
        assert platform.pids()["gateway"] != pids["gateway"]
        assert not _running(pids["gateway"])
        platform.wait_ready(30)
        assert httpx.get(f"{platform.gateway_url}/dev/sms").json()[0]["text"] == "hello"

        platform.restart("broker")
        platform.wait_ready(30)
        assert (tmp_path / "logs" / "gateway.log").exists()
        pids = platform.pids()
    assert not any(_running(pid) for pid in pids.values())


def test_infra_only(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path, services=[])
    try:
        platform.start_infra()
        assert set(platform.pids()) == {"broker", "database"}
    finally:
        platform.stop()
    assert not any(_running(pid) for pid in platform.pids().values())


def test_unknown_service_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown services"):
        LocalPlatform(tmp_path, services=["nope"])


def test_a_service_that_cannot_start_is_named_with_its_log(tmp_path: Path) -> None:
    missing = [s for s in SERVICES if s not in available_services()]
    if not missing:
        pytest.skip("every service has a __main__ now")
    platform = LocalPlatform(tmp_path, services=[missing[0].name], ready_timeout=60)
    with pytest.raises(PlatformError, match=f"{missing[0].name}-") as failure:
        platform.start()
    assert "No module named" in str(failure.value)
    assert not any(_running(pid) for pid in platform.pids().values())
