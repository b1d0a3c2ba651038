"""Pytest plugin: a real broker and database per test session, and per-test databases.

Loaded for the whole repository with `-p studyshare.plumbing.testing`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from studyshare.plumbing import infra
from studyshare.plumbing.kafka import ensure_topics
from studyshare.plumbing.settings import ServiceSettings


@dataclass
class Infra:
    kafka_bootstrap: str
    mongo_url: str
    broker: infra.ChildProcess | None
    database: infra.ChildProcess | None
    workdir: Path

    def settings(
        self, cls: type[ServiceSettings] = ServiceSettings, **overrides: object
    ) -> ServiceSettings:
        values = {
            "environment": "test",
            "kafka_bootstrap": self.kafka_bootstrap,
            "mongo_url": self.mongo_url,
            "kafka_session_timeout_ms": 6000,
            "kafka_rebalance_timeout_ms": 6000,
            "kafka_fetch_max_wait_ms": 250,
            "log_json": True,
        }
        values.update(overrides)
        return cls(**values)


@pytest.fixture(scope="session")
def infra_processes() -> Iterator[Infra]:
    """Tansu and SecantusDB on free ports, stopped by PID at the end of the session."""
    workdir = Path(tempfile.mkdtemp(prefix="studyshare-test-"))
    if os.environ.get("STUDYSHARE_TEST_KAFKA") and os.environ.get("STUDYSHARE_TEST_MONGO"):
        yield Infra(
            os.environ["STUDYSHARE_TEST_KAFKA"],
            os.environ["STUDYSHARE_TEST_MONGO"],
            None,
            None,
            workdir,
        )
        return
    kafka_port, mongo_port = infra.free_port(), infra.free_port()
    broker = infra.broker(kafka_port, workdir / "tansu.log").start()
    database = infra.database(mongo_port, workdir / "db", workdir / "secantus.log").start()
    try:
        asyncio.run(ensure_topics(f"127.0.0.1:{kafka_port}"))
        yield Infra(
            f"127.0.0.1:{kafka_port}", infra.mongo_url(mongo_port), broker, database, workdir
        )
    finally:
        broker.stop()
        database.stop()


@pytest.fixture(scope="session")
def real_infra(infra_processes: Infra) -> Infra:
    return infra_processes


@pytest.fixture
async def mongo_db(real_infra: Infra) -> AsyncIterator:
    """A fresh database for one test, dropped afterwards."""
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(real_infra.mongo_url, tz_aware=True)
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class TestTokens:
    """Mint bearer tokens for tests and install a verifier trusting them on an app."""

    __test__ = False

    def __init__(self) -> None:
        from studyshare.plumbing.tokens import TokenSigner

        self.signer = TokenSigner()

    def install(self, app) -> None:
        from studyshare.plumbing.auth import JWKSVerifier

        app.state.verifier = JWKSVerifier.from_jwks(self.signer.jwks())

    def user(self, sub: str, *roles: str, **claims) -> dict[str, str]:
        token = self.signer.sign(sub=sub, kind="user", roles=list(roles), **claims)
        return {"Authorization": f"Bearer {token}"}

    def patient(self, reference_id: str, study_uid: str, **claims) -> dict[str, str]:
        """A patient's token, naming the reference number by its id as identity's do."""
        token = self.signer.sign(
            sub=f"pat_{reference_id}",
            kind="patient",
            study_uid=study_uid,
            reference_id=reference_id,
            **claims,
        )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def test_tokens() -> TestTokens:
    return TestTokens()


def stop_processes(processes: Iterable[subprocess.Popen], timeout_s: float = 15.0) -> None:
    """SIGTERM to every process at once, then wait for them together (each shutting down
    gracefully at the same time), SIGKILL to those still running after `timeout_s`."""
    running = [proc for proc in processes if proc.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ServiceProcesses:
    """Starts a service's processes (`python -m <module> <command>`) against the test infra,
    each logging to a file, and stops them all by PID at the end of the test."""

    def __init__(self, infra: Infra, log_dir: Path) -> None:
        self.infra = infra
        self.log_dir = log_dir
        self.started: list[subprocess.Popen] = []

    def env(self, database: str, service_name: str, **settings: str) -> dict[str, str]:
        """The environment of a service process: test infra, its database, its own consumer
        group (from `service_name`), plus `STUDYSHARE_<KEY>` overrides given as `key=value`."""
        return {
            **os.environ,
            "STUDYSHARE_ENVIRONMENT": "test",
            "STUDYSHARE_KAFKA_BOOTSTRAP": self.infra.kafka_bootstrap,
            "STUDYSHARE_MONGO_URL": self.infra.mongo_url,
            "STUDYSHARE_DATABASE": database,
            "STUDYSHARE_SERVICE_NAME": service_name,
            "STUDYSHARE_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "STUDYSHARE_KAFKA_REBALANCE_TIMEOUT_MS": "6000",
            **{f"STUDYSHARE_{key.upper()}": value for key, value in settings.items()},
        }

    def start(self, argv: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{log_name}.log", "wb")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        self.started.append(proc)
        return proc

    def module(
        self, module: str, command: str, env: dict[str, str], *extra: str
    ) -> subprocess.Popen:
        name = f"{command}-{len(self.started)}"
        return self.start([sys.executable, "-m", module, command, *extra], env, name)

    def stop_all(self, timeout_s: float = 15.0) -> None:
        stop_processes(self.started, timeout_s)


@pytest.fixture
def service_processes(real_infra: Infra, tmp_path: Path) -> Iterator[ServiceProcesses]:
    processes = ServiceProcesses(real_infra, tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


async def publish_events(infra: Infra, envelopes, db=None) -> None:
    """Publish events as their owning services' relays would: appended to an outbox (`db`, or
    a scratch one dropped afterwards) and relayed to Kafka; feeds a service with events."""
    from pymongo import AsyncMongoClient

    from studyshare.plumbing.eventstore import EventStore
    from studyshare.plumbing.kafka import producer
    from studyshare.plumbing.relay import OutboxRelay

    client = AsyncMongoClient(infra.mongo_url, tz_aware=True)
    scratch = db is None
    db = client[f"t_upstream_{uuid.uuid4().hex[:12]}"] if scratch else client[db.name]
    try:
        store = EventStore(db)
        await store.ensure_indexes()
        await store.append(list(envelopes))
        kafka = producer(infra.settings())
        await kafka.start()
        try:
            await OutboxRelay(db, kafka).drain()
        finally:
            await kafka.stop()
    finally:
        if scratch:
            await client.drop_database(db.name)
        await client.close()


def fuzz_settings(max_examples: int):
    """Hypothesis settings for fuzzing a live API with schemathesis: a bounded number of
    examples, the same ones every run (derandomized), no deadline and no health check (real
    I/O is slow and uneven here), and no shrinking (it would replay requests for minutes)."""
    from hypothesis import HealthCheck, Phase, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )


#: the keys of schemathesis' transport kwargs that an httpx request takes
def production_settings(service: str) -> dict:
    """The settings a service needs to start with `environment=production`: an idempotent
    producer and its own Kafka user over SASL_SSL, its internal credential, those of the
    services it admits, and the internal routes it calls."""
    from studyshare.contracts.routes import INTERNAL_ROUTES

    callers = {c for r in INTERNAL_ROUTES if r.service == service for c in r.callers}
    return {
        "environment": "production",
        "kafka_enable_idempotence": True,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_username": service,
        "kafka_password": "scram-password",
        "internal_token": f"internal-{service}-" + "k" * 24,
        "internal_callers": {c: f"internal-{c}-" + "k" * 24 for c in sorted(callers)},
        "identity_internal_url": "http://identity-api",
        "study_store_internal_url": "http://study-store-api",
    }


TRANSPORT_KEYS = ("method", "url", "params", "headers", "json", "content", "data")


def httpx_request(transport_kwargs: dict) -> dict:
    """The arguments of `httpx.(Async)Client.request` for schemathesis' transport kwargs."""
    request = {k: v for k, v in transport_kwargs.items() if k in TRANSPORT_KEYS}
    if isinstance(request.get("data"), bytes | str):  # a raw body, which httpx calls content
        request["content"] = request.pop("data")
    return request


class LoopThread:
    """An event loop on a thread of its own: drives an app and its database client from
    synchronous (hypothesis) tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def caller(self, http):
        """`call(transport_kwargs) -> httpx.Response` through `http` (an httpx.AsyncClient)."""

        def call(kwargs: dict):
            return self.run(http.request(**httpx_request(kwargs)))

        return call

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def fuzz_operation(
    operation,
    call,
    headers: dict[str, str] | None = None,
    *,
    senders=None,
    aim=None,
    max_examples: int = 10,
    checks=None,
    excluded_checks=(),
    base_url: str = "http://a",
    negative: bool = False,
) -> list[str]:
    """Generated requests for one schemathesis operation (`negative`: ones its schema refuses),
    each aimed (`aim(case)`, e.g. at real ids), sent through `call(transport_kwargs)` (URLs under
    `base_url`) with `headers`, or once as each of `senders(case)` (`{who: headers}`), and
    checked (`checks`, or every check, less `excluded_checks`); the failures, described (the
    first one of each case)."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE

    failures: list[str] = []
    label = f"{operation.method.upper()} {operation.path}"

    @fuzz_settings(max_examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        if aim is not None:
            aim(case)
        for who, sent_with in (senders(case) if senders else {"": headers or {}}).items():
            kwargs = case.as_transport_kwargs(base_url=base_url, headers=sent_with)
            response = call(kwargs)
            try:
                case.validate_response(
                    response,
                    checks=checks,
                    excluded_checks=list(excluded_checks),
                    transport_kwargs=kwargs,
                )
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{label}{f' as {who}' if who else ''}: {str(exc)[:1500]}")
                return

    try:
        check()
    except Unsatisfiable:
        if not negative:
            raise  # an operation with nothing to break (e.g. no parameters) has no bad request
    return failures
