"""End-to-end fixtures: the whole platform on this machine, used only through the gateway."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from studyshare.devstack.platform import LocalPlatform, available_services

from .storykit import Gateway

# Shorter periods than production so the stories see their effects within seconds: accesses
# reach the study logging per 1 s window instead of per minute, and the share service looks for
# buckets past `valid_until` every second instead of every 30 s; the image viewer renews its
# viewer token every 15 s instead of every 150 s. Identity hashes with a cheap
# argon2 (as its own tests do): its worker hashes each pincode it opens from `PincodeSet`, and
# the stories take audit having a reference number's events as the sign that identity has too
# (a login probe before that counts as a failure on the number). Every test sends from this
# machine's one address, so the per-source lockout (20 failures in 15 min in production, tested
# in identity's own tests) would add up the failures of every test in the session: here it
# allows 500. The browsers of one test are told apart by the address a proxy in front of the
# gateway would append to X-Forwarded-For: the portal trusts that second hop here. Likewise the
# self-registrations of one source (10 an hour in production; the API fuzzing alone makes more).
E2E_SETTINGS = {
    "STUDYSHARE_PORTAL_TRUSTED_PROXIES": "2",
    "STUDYSHARE_SOURCE_LOCK_THRESHOLD": "500",
    "STUDYSHARE_REGISTRATIONS_PER_SOURCE": "500",
    "STUDYSHARE_ACCESS_LOG_WINDOW_S": "1",
    "STUDYSHARE_EXPIRY_INTERVAL_SECONDS": "1",
    "STUDYSHARE_ARGON2_TIME_COST": "1",
    "STUDYSHARE_ARGON2_MEMORY_KIB": "8192",
    "STUDYSHARE_VIEWER_TOKEN_TTL_S": "30",
}


@pytest.fixture(scope="session")
def platform() -> Iterator[LocalPlatform]:
    """Broker, database, mail catcher, every service (api, relay, worker) and the gateway,
    on free ports; stopped by PID at the end of the session."""
    run_dir = Path(tempfile.mkdtemp(prefix="studyshare-e2e-"))
    services = [s.name for s in available_services()]
    with LocalPlatform(
        run_dir, services=services, ready_timeout=240, extra_env=E2E_SETTINGS
    ) as running:
        yield running


@pytest.fixture(scope="module")
def api(platform: LocalPlatform) -> Iterator[Gateway]:
    """The platform's public API as the stories use it (`storykit.Gateway`)."""
    with httpx.Client(base_url=platform.gateway_url, timeout=30, trust_env=False) as client:
        yield Gateway(client)


@pytest.fixture
def gateway(platform: LocalPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway_url, timeout=30) as client:
        yield client


def login(gateway: httpx.Client, username: str, password: str) -> dict[str, str]:
    response = gateway.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def service_desk(platform: LocalPlatform, gateway: httpx.Client) -> dict[str, str]:
    return login(gateway, platform.bootstrap_user, platform.bootstrap_password)
