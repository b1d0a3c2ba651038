"""`LocalPlatform`: the whole platform on one machine, as child processes stopped by PID.

Broker (Tansu) and database (SecantusDB), the topics, the mail catcher, every chosen
service's `api`, `relay` and `worker`, the portal (with identity) and the gateway. Used by
`make run`, end-to-end tests and benchmarks:

    with LocalPlatform(run_dir) as platform:
        httpx.get(platform.gateway_url + "/api/...")
        platform.restart("share-api")        # kill -9, start again
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from studyshare.contracts.routes import PORTAL, SERVICE_BY_NAME, SERVICES, Service
from studyshare.devstack.processes import ManagedProcess, stop_all
from studyshare.devstack.settings import LOCALHOST
from studyshare.plumbing import infra
from studyshare.plumbing.kafka import ensure_topics
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

BOOTSTRAP_USER = "servicedesk"
BOOTSTRAP_PASSWORD = "ServiceDesk-Dev-2026!"  # noqa: S105 - local development account only
WORKER_PORT_OFFSET = 100


class PlatformError(RuntimeError):
    """The platform did not come up; the message names the culprit and shows its log tail."""


def available_services() -> list[Service]:
    """Services whose `studyshare.<package>.__main__` exists (others are still being written)."""
    found = []
    for service in SERVICES:
        try:
            spec = importlib.util.find_spec(f"studyshare.{service.package}.__main__")
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            found.append(service)
    return found


def service_command(service: Service) -> list[str]:
    return [sys.executable, "-m", f"studyshare.{service.package}"]


@dataclass(frozen=True)
class Ports:
    gateway: int
    smtp: int
    mail_http: int
    kafka: int
    mongo: int
    apis: Mapping[str, int]
    workers: Mapping[str, int]
    dicom: int
    portal: int = PORTAL.port

    @classmethod
    def fixed(cls) -> Ports:
        """The ports of DEVELOPING.md."""
        return cls(
            gateway=8080,
            smtp=1025,
            mail_http=8025,
            kafka=9092,
            mongo=27017,
            apis={s.name: s.port for s in SERVICES},
            workers={s.name: s.port + WORKER_PORT_OFFSET for s in SERVICES},
            dicom=11112,
        )

    @classmethod
    def free(cls) -> Ports:
        """Free ports for everything (tests, benchmarks)."""
        p = infra.free_port
        return cls(
            gateway=p(),
            smtp=p(),
            mail_http=p(),
            kafka=p(),
            mongo=p(),
            apis={s.name: p() for s in SERVICES},
            workers={s.name: p() for s in SERVICES},
            dicom=p(),
            portal=p(),
        )

    def all_for(self, services: Iterable[Service]) -> list[int]:
        ports = [self.gateway, self.smtp, self.mail_http, self.kafka, self.mongo]
        for s in services:
            ports += [self.apis[s.name], self.workers[s.name]]
        return ports


@dataclass
class LocalPlatform:
    """Starts and supervises the platform; a context manager that leaves nothing running."""

    run_dir: Path
    services: list[str] | None = None
    ports: Ports = field(default_factory=Ports.free)
    bootstrap_user: str = BOOTSTRAP_USER
    bootstrap_password: str = BOOTSTRAP_PASSWORD
    database_prefix: str = "studyshare_"
    sms_token: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 120.0
    stop_timeout: float = 10.0
    fresh: bool = True
    #: ready also means every worker's health port answers (faust takes a few seconds)
    wait_for_workers: bool = True
    #: run the web portal (`studyshare.portal`); None: when identity is one of the services
    portal: bool | None = None
    #: how to run a service (default `python -m studyshare.<package>`); tests pass a fake
    command: Callable[[Service], list[str]] = field(default=lambda s: service_command(s))
    processes: dict[str, ManagedProcess] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).resolve()
        names = self.services
        if names is None:
            names = [s.name for s in available_services()]
        unknown = [n for n in names if n not in SERVICE_BY_NAME]
        if unknown:
            raise ValueError(f"unknown services {unknown}; known: {sorted(SERVICE_BY_NAME)}")
        self.chosen: list[Service] = [SERVICE_BY_NAME[n] for n in names]
        if self.portal is None:
            self.portal = "identity" in names
        #: each service's credential on the others' internal routes, new for every platform
        self.internal_tokens = {s.name: secrets.token_urlsafe(24) for s in SERVICES}
        #: the portal vouches for browsers' addresses to identity (`plumbing.client_address`)
        self.portal_client_secret = secrets.token_urlsafe(24)

    # -- addresses -------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://{LOCALHOST}:{self.ports.gateway}"

    @property
    def portal_url(self) -> str:
        """The portal's pages, through the gateway (`/`)."""
        return f"{self.gateway_url}/"

    @property
    def mail_url(self) -> str:
        return f"http://{LOCALHOST}:{self.ports.mail_http}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{LOCALHOST}:{self.ports.kafka}"

    @property
    def mongo_url(self) -> str:
        return infra.mongo_url(self.ports.mongo)

    def api_url(self, service: str) -> str:
        return f"http://{LOCALHOST}:{self.ports.apis[service]}"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalPlatform:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalPlatform:
        """Everything, then wait for the gateway's `/readyz`; on failure nothing is left running."""
        try:
            ports = self.ports.all_for(self.chosen)
            self._check_ports_free([*ports, self.ports.portal] if self.portal else ports)
            self.start_infra()
            self._launch(self._mailcatcher(), self.ports.smtp, self.ports.mail_http)
            for service in self.chosen:
                for process in self._service_processes(service):
                    self._launch(process)
            if self.portal:
                self._launch(self._portal(), self.ports.portal)
            self._launch(self._gateway(), self.ports.gateway)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info(
            "platform.services_up", gateway=self.gateway_url, services=[s.name for s in self.chosen]
        )
        return self

    def start_infra(self) -> LocalPlatform:
        """Broker and database (and the topics): what `studyshare-dev infra` runs."""
        self._check_ports_free([self.ports.kafka, self.ports.mongo])
        if self.fresh:
            for stale in (self.run_dir / "db", self.run_dir / "blobs", self.logs):
                shutil.rmtree(stale, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._launch(self._broker(), self.ports.kafka)
        self._launch(self._database(), self.ports.mongo)
        self._ensure_topics()
        return self

    def stop(self) -> None:
        """Gateway first, then services, mail catcher, database and broker last."""
        order = list(reversed(self.processes.values()))
        infra_names = {"database", "broker"}
        stop_all([p for p in order if p.name not in infra_names], self.stop_timeout)
        stop_all([p for p in order if p.name in infra_names], self.stop_timeout)
        log.info("platform.stopped", pids=[p.pid for p in order])

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items() if p.pid is not None}

    def kill(self, name: str) -> None:
        """kill -9 one process (fault tests); `restart(name)` brings it back."""
        self._process(name).kill()

    def kill_together(self, names: Iterable[str]) -> None:
        """kill -9 several processes in the same instant (e.g. all of one service), then reap."""
        processes = [self._process(name) for name in names]
        for process in processes:
            process.send_kill()
        for process in processes:
            process.kill()

    def restart(self, name: str, wait: bool = True) -> None:
        """kill -9 the named process (e.g. `share-api`, `gateway`, `broker`) and start it again."""
        process = self._process(name)
        process.kill()
        process.start()
        port = self._port_of(name)
        if wait and port is not None:
            infra.wait_for_port(port, self.ready_timeout, process.proc)
        if name == "broker":
            self._ensure_topics()  # the local broker keeps its topics in memory

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll the gateway's `/readyz` until 200 (and the workers' ports); name what is not
        ready otherwise."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        self._wait_gateway_ready(deadline)
        if not self.wait_for_workers:
            return
        for name, process in self.processes.items():
            if name.endswith("-worker") and process.port is not None:
                while not port_in_use(process.port):
                    self._check_alive()
                    if time.monotonic() > deadline:
                        raise PlatformError(
                            f"{name} did not open its health port {process.port}\n"
                            f"--- {process.log_path} (tail)\n{process.log_tail()}"
                        )
                    time.sleep(0.25)

    def _wait_gateway_ready(self, deadline: float) -> None:
        last: dict[str, Any] = {}
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    response = client.get(f"{self.gateway_url}/readyz")
                    if response.status_code == 200:
                        return
                    last = response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    last = {"not_ready": ["gateway"], "detail": type(exc).__name__}
                time.sleep(0.25)
        raise PlatformError(self._not_ready_report(last))

    # -- processes -------------------------------------------------------------------------

    def _launch(self, process: ManagedProcess, *ports: int) -> ManagedProcess:
        self.processes[process.name] = process
        process.start()
        for port in ports:
            try:  # as long as the platform may take to be ready: all start at once
                infra.wait_for_port(port, self.ready_timeout, process.proc)
            except (RuntimeError, TimeoutError) as exc:
                raise PlatformError(
                    f"{process.name} did not open port {port}: {exc}\n"
                    f"--- {process.log_path} (tail)\n{process.log_tail()}"
                ) from exc
        return process

    def _broker(self) -> ManagedProcess:
        spec = infra.broker(self.ports.kafka)
        return self._process_for("broker", spec.argv, self._base_env(), self.ports.kafka)

    def _database(self) -> ManagedProcess:
        spec = infra.database(self.ports.mongo, self.run_dir / "db")
        return self._process_for("database", spec.argv, self._base_env(), self.ports.mongo)

    def _mailcatcher(self) -> ManagedProcess:
        env = self._base_env() | {
            "STUDYSHARE_MAIL_SMTP_PORT": str(self.ports.smtp),
            "STUDYSHARE_MAIL_HTTP_PORT": str(self.ports.mail_http),
        }
        if self.sms_token:
            env["STUDYSHARE_SMS_TOKEN"] = self.sms_token
        argv = [sys.executable, "-m", "studyshare.devstack", "mailcatcher"]
        return self._process_for("mailcatcher", argv, env, self.ports.mail_http)

    def _portal(self) -> ManagedProcess:
        """The portal calls the public API through the gateway, like any browser client."""
        env = (
            self._base_env()
            | {
                "STUDYSHARE_ENVIRONMENT": "development",
                "STUDYSHARE_HTTP_PORT": str(self.ports.portal),
                "STUDYSHARE_PORTAL_API_URL": self.gateway_url,
                "STUDYSHARE_PUBLIC_BASE_URL": self.gateway_url,
                "STUDYSHARE_PORTAL_CLIENT_SECRET": self.portal_client_secret,
            }
            | dict(self.extra_env)
        )
        argv = [sys.executable, "-m", "studyshare.portal", "api", "--port", str(self.ports.portal)]
        return self._process_for("portal", argv, env, self.ports.portal)

    def _gateway(self) -> ManagedProcess:
        upstreams = {s.name: self.api_url(s.name) for s in self.chosen}
        if self.portal:
            upstreams[PORTAL.name] = f"http://{LOCALHOST}:{self.ports.portal}"
        env = self._base_env() | {
            "STUDYSHARE_GATEWAY_PORT": str(self.ports.gateway),
            "STUDYSHARE_UPSTREAMS": json.dumps(upstreams),
            "STUDYSHARE_MAIL_URL": self.mail_url,
            # nginx's configuration, pid and temp files
            "STUDYSHARE_GATEWAY_RUN_DIR": str(self.run_dir / "gateway"),
        }
        argv = [sys.executable, "-m", "studyshare.devstack", "gateway"]
        return self._process_for("gateway", argv, env, self.ports.gateway)

    def start_receiver(self, callers: Mapping[str, str]) -> ManagedProcess:
        """The study store's C-STORE receiver on `ports.dicom`, admitting these calling AE
        titles (title -> department id); stopped with the rest."""
        service = SERVICE_BY_NAME["study-store"]
        env = self.service_env(service) | {
            "STUDYSHARE_SCP_CALLING_AE_DEPARTMENTS": json.dumps(dict(callers)),
        }
        argv = [*self.command(service), "scp"]
        process = self._process_for("study-store-scp", argv, env, self.ports.dicom)
        return self._launch(process, self.ports.dicom)

    def _service_processes(self, service: Service) -> list[ManagedProcess]:
        env = self.service_env(service)
        module = self.command(service)
        api_port, worker_port = self.ports.apis[service.name], self.ports.workers[service.name]
        processes = [
            self._process_for(
                f"{service.name}-api", [*module, "api", "--port", str(api_port)], env, api_port
            )
        ]
        if service.has_relay:
            processes.append(self._process_for(f"{service.name}-relay", [*module, "relay"], env))
        if service.has_worker:
            argv = [*module, "worker", "--port", str(worker_port)]
            processes.append(self._process_for(f"{service.name}-worker", argv, env, worker_port))
        return processes

    def service_env(self, service: Service) -> dict[str, str]:
        """The `STUDYSHARE_*` environment of one service's processes."""
        identity = self.api_url("identity")
        env = self._base_env() | {
            "STUDYSHARE_ENVIRONMENT": "development",
            "STUDYSHARE_MONGO_URL": self.mongo_url,
            "STUDYSHARE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            # Tansu answers a fetch only when its wait ends, even when events are there
            "STUDYSHARE_KAFKA_FETCH_MAX_WAIT_MS": "250",
            "STUDYSHARE_DATABASE": f"{self.database_prefix}{service.package}",
            "STUDYSHARE_HTTP_PORT": str(self.ports.apis[service.name]),
            "STUDYSHARE_JWKS_URL": f"{identity}/.well-known/jwks.json",
            "STUDYSHARE_PUBLIC_BASE_URL": self.gateway_url,
            "STUDYSHARE_SMTP_HOST": LOCALHOST,
            "STUDYSHARE_SMTP_PORT": str(self.ports.smtp),
            "STUDYSHARE_SMS_URL": f"{self.mail_url}/dev/sms",
            "STUDYSHARE_BOOTSTRAP_USER": self.bootstrap_user,
            "STUDYSHARE_BOOTSTRAP_PASSWORD": self.bootstrap_password,
            "STUDYSHARE_SCP_PORT": str(self.ports.dicom),
            "STUDYSHARE_BLOB_DIR": str(self.run_dir / "blobs" / service.package),
        }
        if self.sms_token:
            env["STUDYSHARE_SMS_TOKEN"] = self.sms_token
        if service.name == "identity":  # the stand-in eID provider, on this machine only
            env["STUDYSHARE_DEMO_EID"] = "true"
            env["STUDYSHARE_PORTAL_CLIENT_SECRET"] = self.portal_client_secret
        return env | self.internal_env(service) | dict(self.extra_env)

    def internal_env(self, service: Service) -> dict[str, str]:
        """Service-to-service calls (`plumbing.internal`): the service's own credential, those
        of every service it may admit, and the addresses of the services it calls."""
        chosen = {s.name for s in self.chosen}
        env = {
            "STUDYSHARE_INTERNAL_TOKEN": self.internal_tokens[service.name],
            "STUDYSHARE_INTERNAL_CALLERS": json.dumps(self.internal_tokens),
        }
        if "identity" in chosen:
            env["STUDYSHARE_IDENTITY_INTERNAL_URL"] = self.api_url("identity")
        if "study-store" in chosen:
            env["STUDYSHARE_STUDY_STORE_INTERNAL_URL"] = self.api_url("study-store")
        return env

    def _base_env(self) -> dict[str, str]:
        """Our environment without inherited `STUDYSHARE_*` settings (they would leak into
        every child), plus JSON logs and unbuffered output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STUDYSHARE_")}
        return env | {"PYTHONUNBUFFERED": "1", "STUDYSHARE_LOG_JSON": "true"}

    def _process_for(
        self, name: str, argv: list[str], env: dict[str, str], port: int | None = None
    ) -> ManagedProcess:
        return ManagedProcess(name, argv, self.logs / f"{name}.log", env, port, self.run_dir)

    def _process(self, name: str) -> ManagedProcess:
        try:
            return self.processes[name]
        except KeyError:
            raise KeyError(f"no process {name!r}; running: {sorted(self.processes)}") from None

    def _port_of(self, name: str) -> int | None:
        process = self._process(name)
        return None if name.endswith("-worker") else process.port

    def _ensure_topics(self) -> None:
        _run_coroutine(ensure_topics(self.kafka_bootstrap))

    def _check_ports_free(self, ports: Iterable[int]) -> None:
        busy = [p for p in ports if port_in_use(p)]
        if busy:
            raise PlatformError(
                f"ports already in use on {LOCALHOST}: {busy} (another `make run` still running?)"
            )

    def _check_alive(self) -> None:
        for process in self.processes.values():
            if not process.alive():
                raise PlatformError(
                    f"{process.name} exited with code {process.returncode}\n"
                    f"--- {process.log_path} (tail)\n{process.log_tail()}"
                )

    def _not_ready_report(self, last: dict[str, Any]) -> str:
        names = last.get("not_ready") or ["gateway"]
        parts = [f"platform not ready after {self.ready_timeout:.0f}s: {', '.join(names)}"]
        states = last.get("services") or {}
        for name in names:
            process = self.processes.get(f"{name}-api") or self.processes.get(name)
            state = states.get(name, last.get("detail", ""))
            parts.append(f"--- {name}: {state}")
            if process is not None:
                parts.append(f"--- {process.log_path} (tail)\n{process.log_tail()}")
        return "\n".join(parts)


def port_in_use(port: int) -> bool:
    """Something listens on `port` (connections in TIME_WAIT do not count, as for servers)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return True
    return False


def _run_coroutine(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run to completion, also when called from inside a running event loop (async tests)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="ensure-topics")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
