from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import DomainEvent
from studyshare.notify.settings import NotifySettings
from studyshare.plumbing import infra
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.testing import stop_processes

HERE = Path(__file__).parent


# --- a real SMTP server process --------------------------------------------------------------


@dataclass
class Catcher:
    port: int
    directory: Path
    proc: subprocess.Popen

    def messages(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(self.directory.glob("*.eml"))
        ]

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages() if address in str(m["To"])]

    async def wait_for(self, predicate, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate(self.messages())
            if found:
                return found
            await asyncio.sleep(0.05)
        return predicate(self.messages())

    def switch(self, name: str, on: bool, only_to: str | None = None) -> None:
        path = self.directory / name
        if on:
            path.write_text(only_to or "on")
        else:
            path.unlink(missing_ok=True)

    @property
    def holding(self) -> bool:
        return (self.directory / "holding").exists()


@pytest.fixture
def start_catcher(tmp_path):
    """Start an SMTP server process (optionally requiring `auth="user:password"`)."""
    started: list[subprocess.Popen] = []

    def start(name: str = "mail", auth: str | None = None) -> Catcher:
        port = infra.free_port()
        directory = tmp_path / name
        directory.mkdir()
        env = {**os.environ, **({"CATCHER_AUTH": auth} if auth else {})}
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "smtp_catcher.py"), str(port), str(directory)],
            stdout=open(tmp_path / f"{name}.log", "wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        started.append(proc)
        infra.wait_for_port(port, 30, proc)
        return Catcher(port, directory, proc)

    yield start
    stop_processes(started, 10)


@pytest.fixture
def smtp_catcher(start_catcher) -> Catcher:
    return start_catcher()


# --- an SMS provider (the same request the local sink takes) ---------------------------------


@dataclass
class SmsSink:
    port: int
    token: str = "sink-token"
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    unauthorized: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dev/sms"

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return list(self.received)


@pytest.fixture
def sms_sink() -> Iterator[SmsSink]:
    sink = SmsSink(port=infra.free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.headers.get("authorization") != f"Bearer {sink.token}":
                sink.unauthorized += 1
                self._reply(401)
                return
            if sink.fail_next > 0:
                sink.fail_next -= 1
                self._reply(sink.fail_status)
                return
            sink.received.append(json.loads(body))
            self._reply(202)

        def _reply(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", sink.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


# --- settings and events -------------------------------------------------------------------


@pytest.fixture
def notify_settings(real_infra, mongo_db, smtp_catcher, sms_sink):
    def make(**overrides) -> NotifySettings:
        values: dict[str, Any] = {
            "database": mongo_db.name,
            "smtp_port": smtp_catcher.port,
            "sms_url": sms_sink.url,
            "sms_token": sms_sink.token,
            "delivery_backoff_base_s": 0.05,
            "delivery_backoff_max_s": 0.2,
            "delivery_max_attempts": 3,
            "study_details_wait_s": 0.0,
            "sender_poll_s": 0.05,
            "public_base_url": "https://studyshare.example",
            "service_desk_email": "desk@studyshare.example",
        }
        values.update(overrides)
        return real_infra.settings(NotifySettings, **values)

    return make


class Events:
    """Envelopes with consecutive versions per aggregate, as the owning services write them."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}

    def __call__(
        self, event: DomainEvent, aggregate_id: str, occurred_at: datetime | None = None
    ) -> EventEnvelope:
        version = self.versions.get(aggregate_id, 0) + 1
        self.versions[aggregate_id] = version
        return envelope_for(
            event,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            actor=Actor(id="usr_actor"),
            correlation_id=f"corr-{aggregate_id}",
            occurred_at=occurred_at,
        )


@pytest.fixture
def events() -> Events:
    return Events()


def soon(minutes: int = 5) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def worker_env(real_infra, settings: NotifySettings, service_name: str) -> dict[str, str]:
    return {
        **os.environ,
        "STUDYSHARE_SERVICE_NAME": service_name,
        "STUDYSHARE_KAFKA_BOOTSTRAP": real_infra.kafka_bootstrap,
        "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
        "STUDYSHARE_DATABASE": settings.database_name,
        "STUDYSHARE_ENVIRONMENT": "test",
        "STUDYSHARE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "STUDYSHARE_KAFKA_REBALANCE_TIMEOUT_MS": "6000",
        "STUDYSHARE_SMTP_PORT": str(settings.smtp_port),
        "STUDYSHARE_SMS_URL": settings.sms_url,
        "STUDYSHARE_SMS_TOKEN": settings.sms_token,
        "STUDYSHARE_PUBLIC_BASE_URL": settings.public_base_url,
        "STUDYSHARE_DELIVERY_BACKOFF_BASE_S": "0.1",
        "STUDYSHARE_DELIVERY_BACKOFF_MAX_S": "0.5",
        "STUDYSHARE_DELIVERY_LEASE_S": "4",
        "STUDYSHARE_STUDY_DETAILS_WAIT_S": "0",
        "STUDYSHARE_SENDER_POLL_S": "0.05",
    }


# --- the people, groups and studies of most tests --------------------------------------------


def user_registered(user_id: str, first: str, last: str, **fields) -> DomainEvent:
    from studyshare.contracts.events.identity import UserRegistered

    values = {
        "user_id": user_id,
        "username": user_id,
        "first_name": first,
        "last_name": last,
        "email": f"{user_id}@example.org",
    }
    values.update(fields)
    return UserRegistered(**values)


async def apply(db, envelopes, settings: NotifySettings | None = None) -> None:
    """Feed events to the worker's projections (directory first, then reactions), in-process."""
    from studyshare.notify.__main__ import projections
    from studyshare.plumbing.projection import ProjectionRunner

    for projection in projections(settings or NotifySettings(environment="test")):
        await ProjectionRunner(projection, db).apply_batch(envelopes)


async def drain(sender, timeout: float = 20.0) -> None:
    """Run the sender until no message is open any more (retries included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await sender.run_until_idle()
        if not await sender.store.records.count_documents(
            {"state": {"$in": ["pending", "sending", "retry"]}}
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("messages still open after the timeout")


async def events_of(db, event_type: str) -> list[dict[str, Any]]:
    return await db.events.find({"event_type": event_type}).to_list(None)
