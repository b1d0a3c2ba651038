"""LocalPlatform with the real broker, database, mail catcher, gateway and (fake) services."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from studyshare.contracts.routes import Service
from studyshare.devstack.platform import (
    LocalPlatform,
    PlatformError,
    port_in_use,
)

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
        assert all(p.alive() for p in platform.processes.values())
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


def _broken(service: Service) -> list[str]:
    code = "import sys; print('settings invalid: STUDYSHARE_X missing'); sys.exit(3)"
    return [sys.executable, "-c", code]


def test_a_service_that_cannot_start_is_named_with_its_log(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path, services=["share"], command=_broken, ready_timeout=60)
    with pytest.raises(PlatformError, match="share-") as failure:
        platform.start()
    assert "exited with code 3" in str(failure.value)
    assert "settings invalid: STUDYSHARE_X missing" in str(failure.value)
    assert not any(_running(pid) for pid in platform.pids().values())


def _fake(service: Service) -> list[str]:
    return [sys.executable, str(Path(__file__).parent / "fake_service.py"), service.name]


def test_services_get_their_processes_and_settings(tmp_path: Path) -> None:
    platform = LocalPlatform(
        tmp_path, services=["notify", "audit"], command=_fake, ready_timeout=90
    )
    with platform:
        pids = platform.pids()
        # audit has no relay (route table); every service has an api and a worker
        assert {"notify-api", "notify-relay", "notify-worker", "audit-api", "audit-worker"} <= set(
            pids
        )
        assert "audit-relay" not in pids
        env = httpx.get(f"{platform.gateway_url}/api/notifications/env").json()
        assert env["STUDYSHARE_DATABASE"] == "studyshare_notify"
        assert env["STUDYSHARE_JWKS_URL"] == f"{platform.api_url('identity')}/.well-known/jwks.json"
        assert env["STUDYSHARE_PUBLIC_BASE_URL"] == platform.gateway_url
        assert env["STUDYSHARE_SMTP_PORT"] == str(platform.ports.smtp)
        assert env["STUDYSHARE_SMS_URL"] == f"{platform.mail_url}/dev/sms"
        assert env["STUDYSHARE_BOOTSTRAP_USER"] == platform.bootstrap_user
        assert env["STUDYSHARE_KAFKA_BOOTSTRAP"] == platform.kafka_bootstrap
        # the workers run: ready means their health page answers on the worker port
        for name in ("notify", "audit"):
            assert port_in_use(platform.ports.workers[name])
        ready = httpx.get(f"{platform.gateway_url}/readyz").json()
        assert ready["services"] == {"notify": "ready", "audit": "ready", "mailcatcher": "ready"}

        platform.kill("notify-api")
        down = httpx.get(f"{platform.gateway_url}/api/notifications/env")
        assert down.status_code == 502
        platform.restart("notify-api")
        platform.wait_ready(30)
        assert httpx.get(f"{platform.gateway_url}/api/notifications/env").status_code == 200
        assert platform.pids()["notify-api"] != pids["notify-api"]
        assert all(p.alive() for p in platform.processes.values())

        together = ["notify-relay", "notify-worker"]  # a whole service at once (fault tests)
        platform.kill_together(together)
        assert not any(platform.processes[name].alive() for name in together)
        assert platform.processes["notify-api"].alive()
        for name in together:
            platform.restart(name)
        platform.wait_ready(30)
        assert all(p.alive() for p in platform.processes.values())
        pids = platform.pids()
    assert not any(_running(pid) for pid in pids.values())
