"""Scale figures (`python -m bench --only scale`): how the study store's API grows with its data.

At each size (`BENCH_SCALE_SIZES`, buckets, each sharing one study of its own; the data is
written straight into the database by `bench/scale_data.py`, not through HTTP) the study
store's API is started as a child process (`python -m studyshare.study_store api`, own broker
and database, tokens signed here and their key set served from here) and measured:

- time from start to `/readyz` answering 200 (the access model loaded), and its resident
  memory then (`VmRSS`) and at its peak (`VmHWM`), from `/proc/<pid>/status`;
- access decisions: WADO-RS metadata of the first study as a recipient holding 1, 100 and
  10,000 grants (`wrk --latency`), requests/s and p99;
- the first page (50) of `GET /api/studies` (study store) and `GET /api/shared-with-me`
  (share service, its bucket view and directory written the same way) as a recipient holding
  1, 100 and 10,000 entries: p99, one request at a time (a page slower than `TIMEOUT_S` is
  reported as nan);
- audit replay events/s and peak memory at `BENCH_SCALE_AUDIT_EVENTS` (`bench/scale_audit.py`);
- outbox relay events/s with a backlog of `BENCH_SCALE_RELAY_EVENTS` (`bench/scale_relay.py`).

Each figure prints as a curve: size -> value, with the growth per 10x (10 = linear in the
size, 1 = flat) so a superlinear one shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import scale_data
from bench.harness import LocalInfra, local_infra
from bench.scale_data import GRANTS
from studyshare.plumbing import infra
from studyshare.plumbing.kafka import ensure_topics
from studyshare.plumbing.testing import stop_processes
from studyshare.plumbing.tokens import TokenSigner

SIZES = tuple(int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "10000,30000,100000").split(","))
WRK_SECONDS = int(os.environ.get("BENCH_SCALE_WRK_SECONDS", "4"))
WRK_CONNECTIONS = 16
DATABASE = "bench_scale_study_store"
SHARE_DATABASE = "bench_scale_share"
DICOM_JSON = "application/dicom+json"
MIN_REQUESTS = 5
TIMEOUT_S = 30.0  # a first page slower than this is reported as nan
READY_TIMEOUT_S = 900.0


@dataclass
class Series:
    """One measured quantity of a curve; rates are turned into costs for the growth."""

    label: str
    unit: str
    higher_is_better: bool = False
    judged: bool = True  # False: shown, not flagged (a p99 under a closed loop is noisy)


@dataclass
class Curve:
    """Figures at several sizes of one axis. `linear`: the work itself grows with the axis
    (memory, loading), else the work per request should stay flat."""

    name: str
    axis: str
    series: list[Series]
    linear: bool
    points: list[tuple[int, list[float]]] = field(default_factory=list)
    note: str = ""

    def add(self, size: int, *values: float) -> None:
        self.points.append((size, list(values)))

    def growth(self, column: int) -> list[float | None]:
        """Per step, the cost's growth per 10x of the axis (a rate inverted into a cost)."""
        out: list[float | None] = [None]
        better = self.series[column].higher_is_better
        for (s0, v0), (s1, v1) in zip(self.points, self.points[1:], strict=False):
            a, b = v0[column], v1[column]
            if a <= 0 or b <= 0 or s1 == s0:
                out.append(None)
                continue
            out.append((a / b if better else b / a) ** (1 / math.log10(s1 / s0)))
        return out

    def superlinear(self) -> bool:
        """A cost growing more than 1.5 x the work's own growth per 10x (linear or flat)."""
        bound = (10.0 if self.linear else 1.0) * 1.5
        return any(
            g is not None and g > bound
            for column, series in enumerate(self.series)
            if series.judged
            for g in self.growth(column)[1:]
        )

    def render(self) -> str:
        expected = "10 = linear" if self.linear else "1 = flat"
        head = [f"{self.axis:>10}"]
        for s in self.series:
            head += [f"{s.label + ' (' + s.unit + ')':>16}", f"{'x per 10x':>9}"]
        rows = [f"{self.name} (cost growth per 10x: {expected})", "  " + " | ".join(head)]
        growths = [self.growth(c) for c in range(len(self.series))]
        for i, (size, values) in enumerate(self.points):
            cells = [f"{size:>10,}"]
            for c, value in enumerate(values):
                g = growths[c][i]
                cells += [f"{value:>16,.1f}", f"{'—' if g is None else f'{g:.2f}':>9}"]
            rows.append("  " + " | ".join(cells))
        if self.superlinear():
            rows.append("  ^ grows faster than the work (README, Benchmarks, Scale)")
        if self.note:
            rows.append(f"  ({self.note})")
        return "\n".join(rows)


# -- the key set, served from here ------------------------------------------------------------


@contextlib.contextmanager
def jwks_server(signer: TokenSigner) -> Iterator[str]:
    """The signer's key set at `http://127.0.0.1:<port>/.well-known/jwks.json`."""
    body = json.dumps(signer.jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


# -- the API process ------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


@contextlib.contextmanager
def service(
    env: LocalInfra, jwks_url: str, package: str, database: str, workdir: Path
) -> Iterator[tuple[str, subprocess.Popen, float]]:
    """`python -m studyshare.<package> api` as a child on a free port, until ready:
    (its URL, the process, seconds from start to `/readyz` answering 200); stopped by PID."""
    port = infra.free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("STUDYSHARE_")} | {
        "PYTHONUNBUFFERED": "1",
        "STUDYSHARE_LOG_JSON": "true",
        "STUDYSHARE_LOG_LEVEL": "WARNING",
        "STUDYSHARE_ENVIRONMENT": "development",
        "STUDYSHARE_MONGO_URL": env.mongo_url,
        "STUDYSHARE_KAFKA_BOOTSTRAP": env.kafka_bootstrap,
        "STUDYSHARE_DATABASE": database,
        "STUDYSHARE_HTTP_PORT": str(port),
        "STUDYSHARE_JWKS_URL": jwks_url,
        "STUDYSHARE_BLOB_DIR": str(workdir / "blobs"),
    }
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with (workdir / f"{package}-api.log").open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", f"studyshare.{package}", "api", "--port", str(port)],
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield url, process, wait_ready(url, process, started)
    finally:
        stop_processes([process], 20)


def wait_ready(url: str, process: subprocess.Popen, started: float) -> float:
    """Seconds from `started` to the first 200 of `/readyz`."""
    with httpx.Client(timeout=5, trust_env=False) as client:
        while time.monotonic() - started < READY_TIMEOUT_S:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited ({process.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/readyz").status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.05)
    raise RuntimeError(f"{process.args} was not ready in time")


# -- wrk ----------------------------------------------------------------------------------


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, token: str, connections: int, accept: str | None = None) -> tuple[float, float]:
    """(requests/s, p99 in ms) of a closed loop of `connections` for `WRK_SECONDS`."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{WRK_SECONDS}s", "--latency"]
    argv += ["-H", f"Authorization: Bearer {token}"]
    if accept:
        argv += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        raise RuntimeError(f"wrk {url}: {bad.group(1)} non-2xx answers")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return rate, float(p99.group(1)) * _UNITS[p99.group(2)]  # type: ignore[union-attr]


def sequential(url: str, token: str) -> float:
    """p99 in ms of a first page (`limit=50`) asked one request at a time for `WRK_SECONDS`
    (at least `MIN_REQUESTS`; with few requests the p99 is their slowest)."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=TIMEOUT_S, trust_env=False, headers=headers) as client:
        try:
            client.get(url, params={"limit": 50}).raise_for_status()  # warm-up
            until = time.monotonic() + WRK_SECONDS
            while time.monotonic() < until or len(latencies) < MIN_REQUESTS:
                started = time.perf_counter()
                client.get(url, params={"limit": 50}).raise_for_status()
                latencies.append(time.perf_counter() - started)
        except httpx.TimeoutException:
            print(f"  {url}: no answer within {TIMEOUT_S:.0f} s", file=sys.stderr)
            return float("nan")
    latencies.sort()
    return latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3


# -- the run --------------------------------------------------------------------------------


def measure(sizes: tuple[int, ...] = SIZES) -> list[Curve]:
    """Every curve of the study store's API at `sizes` (see the module)."""
    sizes = tuple(sorted(sizes))
    rate, p99 = Series("rate", "req/s", True), Series("p99", "ms", judged=False)
    api = Curve(
        "study store API start",
        "buckets",
        [Series("time to ready", "s"), Series("VmRSS ready", "MiB"), Series("VmHWM", "MiB")],
        linear=True,
    )
    generated = Curve(
        "generation into the database",
        "buckets",
        [Series("insert_many", "docs/s", True)],
        linear=False,
        note="ordered=False, 10,000 documents a batch; 4 per bucket (a study and a bucket for "
        "each service)",
    )
    decisions = {
        size: Curve(
            f"access decision (WADO-RS metadata) at {size:,} buckets",
            "grants",
            [rate, p99],
            linear=False,
            note=f"wrk {WRK_CONNECTIONS} connections, {WRK_SECONDS} s per point",
        )
        for size in sizes
    }
    lists = {
        size: Curve(
            f"first page (50) by entries held, at {size:,} buckets",
            "entries",
            [Series("/api/studies p99", "ms"), Series("/api/shared-with-me p99", "ms")],
            linear=False,
            note=f"one request at a time for {WRK_SECONDS} s, at least {MIN_REQUESTS}",
        )
        for size in sizes
    }
    signer = TokenSigner()
    tokens = {
        g: signer.sign(ttl_s=3600, sub=scale_data.probe_user(g), roles=["physician"])
        for g in GRANTS
    }
    uid = scale_data.study_uid(0)
    with local_infra() as env, jwks_server(signer) as jwks_url:
        asyncio.run(ensure_topics(env.kafka_bootstrap))
        workdir = Path(tempfile.mkdtemp(prefix="studyshare-bench-scale-"))
        done = 0
        for size in sizes:
            seconds = asyncio.run(scale_data.generate(env.mongo_url, DATABASE, done, size))
            seconds += asyncio.run(
                scale_data.generate_share(env.mongo_url, SHARE_DATABASE, done, size)
            )
            generated.add(size, 4 * (size - done) / seconds)
            done = size
            with service(env, jwks_url, "study_store", DATABASE, workdir) as (url, proc, ready):
                status = proc_status(proc.pid)
                api.add(size, ready, status["VmRSS"] / 1024, status["VmHWM"] / 1024)
                print(
                    f"  scale {size:,}: ready in {ready:.1f} s, {status['VmRSS'] / 1024:.0f} MiB",
                    file=sys.stderr,
                )
                metadata = f"{url}/dicomweb/studies/{uid}/metadata"
                wrk(metadata, tokens[1], WRK_CONNECTIONS, DICOM_JSON)  # warm-up
                for g in (g for g in GRANTS if g <= size):
                    decisions[size].add(g, *wrk(metadata, tokens[g], WRK_CONNECTIONS, DICOM_JSON))
                studies = {
                    g: sequential(f"{url}/api/studies", tokens[g]) for g in GRANTS if g <= size
                }
            with service(env, jwks_url, "share", SHARE_DATABASE, workdir) as (url, _, _):
                for g in (g for g in GRANTS if g <= size):
                    lists[size].add(
                        g, studies[g], sequential(f"{url}/api/shared-with-me", tokens[g])
                    )
        from bench import scale_audit, scale_relay  # they import this module

        audit = scale_audit.measure(env)
        relay = scale_relay.measure(env)
    return [api, *decisions.values(), *lists.values(), audit, relay, generated]


def report(curves: list[Curve], sizes: tuple[int, ...] = SIZES) -> str:
    head = (
        f"Scale (sizes {', '.join(f'{s:,}' for s in sizes)} buckets; "
        f"load average {os.getloadavg()[0]:.1f} at the end)"
    )
    if max(sizes) < 1_000_000:
        head += (
            "\n10^6 buckets (4 x 10^6 documents, ~3,200/s with insert_many into SecantusDB "
            "here: 40 minutes with the rest) are left out by default: "
            "BENCH_SCALE_SIZES=10000,100000,1000000 measures them."
        )
    return "\n\n".join([head, *(c.render() for c in curves)])


if __name__ == "__main__":
    print(report(measure()))
