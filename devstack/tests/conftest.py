"""Real processes on free ports for the devstack tests, stopped by PID."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from studyshare.devstack.processes import ManagedProcess, stop_all
from studyshare.plumbing.infra import free_port, wait_for_port

HERE = Path(__file__).parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDYSHARE_")}
    return env | {"PYTHONUNBUFFERED": "1"} | extra


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class Processes:
    """Starts processes for one test module; stops all of them at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[ManagedProcess] = []

    def start(
        self, name: str, argv: list[str], port: int, env: Mapping[str, str]
    ) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.logs / f"{name}.log", env, port)
        self.started.append(process.start())
        try:
            wait_for_port(port, 30, process.proc)
        except Exception as exc:
            raise RuntimeError(f"{name} did not start:\n{process.log_tail()}") from exc
        return process

    def upstream(self, service: str) -> str:
        port = free_port()
        argv = [sys.executable, str(HERE / "upstream_app.py"), service, str(port)]
        self.start(f"upstream-{service}", argv, port, clean_env())
        return f"http://127.0.0.1:{port}"

    def gateway(self, upstreams: dict[str, str], mail_url: str = "", **settings: str) -> str:
        port = free_port()
        env = clean_env(
            **{f"STUDYSHARE_{k.upper()}": v for k, v in settings.items()},
            STUDYSHARE_GATEWAY_PORT=str(port),
            STUDYSHARE_UPSTREAMS=json.dumps(upstreams),
            STUDYSHARE_MAIL_URL=mail_url,
        )
        argv = [sys.executable, "-m", "studyshare.devstack", "gateway"]
        process = self.start(f"gateway-{port}", argv, port, env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30  # nginx listens: until its app answers through it
        while not _answers(f"{url}/healthz"):
            if not process.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"gateway on {port} does not answer:\n{process.log_tail()}")
            time.sleep(0.05)
        return url

    def mailcatcher(self, sms_token: str | None = None) -> tuple[str, int]:
        smtp, http = free_port(), free_port()
        env = clean_env(STUDYSHARE_MAIL_SMTP_PORT=str(smtp), STUDYSHARE_MAIL_HTTP_PORT=str(http))
        if sms_token:
            env["STUDYSHARE_SMS_TOKEN"] = sms_token
        argv = [sys.executable, "-m", "studyshare.devstack", "mailcatcher"]
        process = self.start(f"mailcatcher-{http}", argv, http, env)
        wait_for_port(smtp, 30, process.proc)
        return f"http://127.0.0.1:{http}", smtp

    def stop(self) -> None:
        stop_all(self.started, 10)


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    procs = Processes(tmp_path_factory.mktemp("devstack-logs"))
    try:
        yield procs
    finally:
        procs.stop()
