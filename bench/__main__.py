"""`make bench` (`uv run python -m bench`): every figure of issue 9, side by side, in one run.

1. outbox relay vs. a raw aiokafka producer (own broker and database);
2. audit replay (rebuild) vs. a raw bulk insert of the same documents (same database);
   C-STORE receive (`bench/cstore.py`) vs. dcmtk's storescp, both fed by storescu;
3. then the whole platform (`LocalPlatform`) plus the baseline app (`bench/baseline_app.py`,
   uvicorn with the services' flags) routed by the gateway under `/bench`:
   - access decision: WADO-RS study metadata of a shared study as the recipient vs. the same
     framework answering a constant, both through the gateway, `wrk` closed loop;
   - WADO-RS instance retrieve vs. the same bytes as a static file served by nginx (Debian's
     package, `bench/nginx.py`), through the same gateway and direct, `wrk`;
   - share command -> visible in the recipient's list, and -> the recipient can open the
     images (WADO-RS metadata 200), p50/p99, 20 concurrent senders, a study of its own per share;
   - the viewer's pattern: a 300-frame series frame by frame, 6 at once, vs. the same frames
     as static files from nginx (`bench/viewer_frames.py`).

Prints a markdown table and the machine. Every process it starts is stopped by PID.
   - hot routes: the recipient's metadata read with the study store's `@hot` routes, then
     with them switched off (`STUDYSHARE_HOT_ROUTES=false`, the API restarted).
`--only access,wado` (names: access, wado, share, viewer, hot, relay, audit, cstore, scale)
measures only some figures. `scale` (`bench/scale.py`: memory, time to ready, access decisions
and first pages as the data grows, printed as curves) takes several minutes and runs only when
named: `python -m bench --only scale` (sizes: `BENCH_SCALE_SIZES`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import nginx, viewer_frames
from bench.harness import Figure, local_infra, machine, render
from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related
from studyshare.devstack.platform import LocalPlatform
from studyshare.plumbing import infra
from studyshare.plumbing.testing import stop_processes

SENDERS = 20
SHARES_PER_SENDER = 5
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "8"))
WRK_CONNECTIONS = int(os.environ.get("BENCH_WRK_CONNECTIONS", "32"))
IMAGE_SIZE = 512  # pixels a side, 8 bit: a ~256 KiB instance
PASSWORD = "Bench-Password-2026!"
STUDY = DemoStudy(
    "bench-study",
    "BENCH-0001",
    "Bench^Pat",
    "19700101",
    "F",
    "Bench CT",
    "OT",
    "20260101",
    "ACC-B1",
)


class BenchPlatform(LocalPlatform):
    """The platform, with `STUDYSHARE_EXTRA_ROUTES` given to the gateway (routes `/bench`)."""

    extra_routes: dict[str, str] = {}

    def _gateway(self):  # type: ignore[override]
        process = super()._gateway()
        process.env["STUDYSHARE_EXTRA_ROUTES"] = json.dumps(self.extra_routes)
        return process


# -- wrk ----------------------------------------------------------------------------------


def wrk(url: str, token: str | None = None, accept: str | None = None) -> tuple[float, int]:
    """(requests/s, non-2xx answers) of a fixed-duration closed loop with keep-alive."""
    argv = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if accept:
        argv += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if errors:
        print(f"  wrk {url}: {errors.group(0)}", file=sys.stderr)
    return rate, int(bad.group(1)) if bad else 0


# -- setup through the public API -----------------------------------------------------------


async def call(client: httpx.AsyncClient, method: str, path: str, token: str | None, **kw):
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await client.request(method, path, headers=headers, **kw)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {path} -> {response.status_code} {response.text[:300]}")
    return response


async def login(client: httpx.AsyncClient, username: str, wait_s: float = 30.0) -> str:
    deadline = time.monotonic() + wait_s
    while True:
        body = {"username": username, "password": PASSWORD}
        response = await client.post("/api/auth/login", json=body)
        if response.status_code == 200:
            return response.json()["access_token"]
        if time.monotonic() > deadline:
            raise RuntimeError(f"login {username}: {response.status_code} {response.text[:200]}")
        await asyncio.sleep(0.3)


async def create_user(
    client: httpx.AsyncClient, desk: str, name: str, roles: list[str], department: str | None
) -> str:
    body = {
        "username": name,
        "password": PASSWORD,
        "first_name": "Bench",
        "last_name": name.replace(".", " ").title(),
        "email": f"{name}@bench.studyshare.local",
        "mobile": "+32470000009",
        "roles": roles,
        "language": "en",
    }
    if department:
        body["department_ids"] = [department]
        if "department_admin" in roles:
            body["admin_of"] = [department]
    answer = (await call(client, "POST", "/api/users", desk, json=body)).json()
    return answer.get("user_id") or answer["id"]


async def until(action, what: str, wait_s: float = 60.0):
    """Retry `action()` (the read sides are eventually consistent) until it returns truthy."""
    deadline = time.monotonic() + wait_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = await action()
            if result:
                return result
        except RuntimeError as exc:
            last = exc
        await asyncio.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}: {last}")


def share_body(recipient_id: str, study_uid: str = STUDY.study_uid) -> dict:
    return {
        "study_uids": [study_uid],
        "recipients": [{"kind": "user", "id": recipient_id}],
        "access_level": "images_report_read",
        "reason": "benchmark",
        "patient_agreed": True,
        "two_factor": False,
        "send_mail": False,
    }


async def setup(client: httpx.AsyncClient, platform: LocalPlatform, part10: bytes) -> dict:
    desk = await login_as(client, platform.bootstrap_user, platform.bootstrap_password)
    department = {
        "name": "Radiology (bench)",
        "country": "be",
        "kind": "radiology",
        "email": "radiology@bench.studyshare.local",
    }
    dep = (await call(client, "POST", "/api/departments", desk, json=department)).json()
    dep_id = dep.get("department_id") or dep["id"]
    admin = "bench.admin"
    await create_user(client, desk, admin, ["department_admin", "department_staff"], dep_id)
    senders = [f"bench.sender{i}" for i in range(SENDERS)]
    recipients = [f"bench.recipient{i}" for i in range(SENDERS)]
    await asyncio.gather(
        *(create_user(client, desk, s, ["department_staff"], dep_id) for s in senders)
    )
    recipient_ids = await asyncio.gather(
        *(create_user(client, desk, r, ["physician"], None) for r in [*recipients, "bench.warm"])
    )
    warm_up_id = recipient_ids.pop()
    admin_token = await login(client, admin)
    body, content_type = multipart_related([part10])
    await until(
        lambda: call(
            client,
            "POST",
            "/dicomweb/studies",
            admin_token,
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        ),
        "the upload",
    )
    sender_tokens = await asyncio.gather(*(login(client, s) for s in senders))
    recipient_tokens = await asyncio.gather(*(login(client, r) for r in recipients))
    # the first share waits for the share service to know the study and the recipient
    await until(
        lambda: call(
            client, "POST", "/api/shares", sender_tokens[0], json=share_body(recipient_ids[0])
        ),
        "the share service to accept a share",
    )
    uid = STUDY.study_uid
    # the recipient's access reaches the study store
    await until(
        lambda: call(client, "GET", f"/dicomweb/studies/{uid}/metadata", recipient_tokens[0]),
        "the recipient's access in the study store",
    )
    return {
        "admin_token": admin_token,
        "warm_up_id": warm_up_id,
        "sender_tokens": sender_tokens,
        "recipient_ids": recipient_ids,
        "recipient_tokens": recipient_tokens,
    }


async def login_as(client: httpx.AsyncClient, username: str, password: str) -> str:
    body = {"username": username, "password": password}
    return (await call(client, "POST", "/api/auth/login", None, json=body)).json()["access_token"]


# -- figures --------------------------------------------------------------------------------


FIGURES = ("access", "wado", "share", "viewer", "hot", "relay", "audit", "cstore")
EXTRA = ("scale",)  # measured only when named in --only


def access_and_retrieve(
    gateway: str, nginx: str, token: str, size: int, only: frozenset[str] = frozenset(FIGURES)
) -> list[Figure]:
    uid = STUDY.study_uid
    series = instance_uids()
    metadata_url = f"{gateway}/dicomweb/studies/{uid}/metadata"
    wrk(metadata_url, token, "application/dicom+json")  # warm-up (shorter would be noisier)
    figures: list[Figure] = []
    note = f"wrk {WRK_CONNECTIONS} connections, {WRK_SECONDS}s each"
    if "access" in only:
        figures.append(access_figure(gateway, metadata_url, token, note))
    if "wado" in only:
        figures += retrieve_figures(gateway, nginx, token, size, uid, series, note)
    return figures


def access_figure(gateway: str, metadata_url: str, token: str, note: str) -> Figure:
    ours, bad_ours = wrk(metadata_url, token, "application/dicom+json")
    base, bad_base = wrk(f"{gateway}/bench/constant")
    if bad_ours or bad_base:
        note += f"; non-2xx: {bad_ours} ours, {bad_base} baseline"
    return Figure(
        "access decision (WADO-RS metadata as recipient vs constant)",
        ours,
        base,
        "req/s",
        ">= 0.8 x constant",
        ours / base >= 0.8 and not bad_ours,
        note,
    )


def hot_routes_figure(platform: LocalPlatform, token: str) -> Figure:
    """The study store's `@hot` routes measured: the recipient's WADO-RS metadata read with
    them, then with the study store's API restarted with `STUDYSHARE_HOT_ROUTES=false`."""
    metadata_url = f"{platform.gateway_url}/dicomweb/studies/{STUDY.study_uid}/metadata"
    accept = "application/dicom+json"
    hot, bad_hot = wrk(metadata_url, token, accept)
    api = platform.processes["study-store-api"]
    api.env = {**(api.env or {}), "STUDYSHARE_HOT_ROUTES": "false"}
    platform.restart("study-store-api")
    platform.wait_ready()
    wrk(metadata_url, token, accept)  # warm-up, as for the hot run
    stack, bad_stack = wrk(metadata_url, token, accept)
    note = f"wrk {WRK_CONNECTIONS} connections, {WRK_SECONDS}s each, through the gateway"
    if bad_hot or bad_stack:
        note += f"; non-2xx: {bad_hot} hot, {bad_stack} FastAPI"
    return Figure(
        "hot routes (WADO-RS metadata: @hot vs FastAPI's stack)",
        hot,
        stack,
        "req/s",
        "kept if >= 1.2 x",
        hot / stack >= 1.2 and not (bad_hot or bad_stack),
        note,
    )


def retrieve_figures(
    gateway: str,
    nginx: str,
    token: str,
    size: int,
    uid: str,
    series: tuple[str, str],
    note: str,
) -> list[Figure]:
    """Ours through the gateway vs the same bytes as a static file served by nginx, once
    through the same gateway and once direct (no gateway in front of nginx)."""
    instance_url = f"{gateway}/dicomweb/studies/{uid}/series/{series[0]}/instances/{series[1]}"
    accept = 'multipart/related; type="application/dicom"'
    ours, bad_ours = wrk(instance_url, token, accept)
    mb = size / 1e6
    figures = []
    for where, url in (
        ("through the gateway", f"{gateway}/bench-nginx/instance.dcm"),
        ("direct", f"{nginx}/bench-nginx/instance.dcm"),
    ):
        base, bad_base = wrk(url)
        detail = f"{size / 1024:.0f} KiB instance; {note}"
        if bad_ours or bad_base:
            detail += f"; non-2xx: {bad_ours} ours, {bad_base} nginx"
        figures.append(
            Figure(
                f"WADO-RS instance retrieve vs nginx static file, {where}",
                ours * mb,
                base * mb,
                "MB/s",
                ">= 0.8 x nginx",
                ours / base >= 0.8 and not bad_ours,
                detail,
            )
        )
    return figures


def instance_uids() -> tuple[str, str]:
    from studyshare.devstack.dicomgen import stable_uid

    return stable_uid(f"{STUDY.key}/1"), stable_uid(f"{STUDY.key}/1/1")


def shared_study(n: int) -> DemoStudy:
    """The n-th study of the share figures: one per share, so that "can open" is new each
    time (a second grant to the same study would open at once)."""
    return DemoStudy(
        f"bench-share-{n}",
        f"BENCH-S{n:04d}",
        "Bench^Share",
        "19700101",
        "F",
        f"Bench CT {n}",
        "CT",
        "20260101",
        f"ACC-S{n}",
    )


SHARED_STUDIES = [shared_study(n) for n in range(SENDERS * SHARES_PER_SENDER)]


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


async def share_latency(client: httpx.AsyncClient, users: dict) -> list[Figure]:
    """Each of 20 senders shares 5 studies, one at a time, each with its own recipient, who
    polls both moments: the bucket in `GET /api/shared-with-me` (the share service's read
    model, written with the event) and WADO-RS metadata of the study answering 200 (through
    the relay, Kafka and the study store's access model)."""
    visible: list[float] = []
    openable: list[float] = []
    answered: list[float] = []  # the share command's own answer time (diagnostic)
    errors: list[str] = []

    async def sender(i: int) -> None:
        token, recipient = users["sender_tokens"][i], users["recipient_ids"][i]
        seen_by = {"Authorization": f"Bearer {users['recipient_tokens'][i]}"}
        for j in range(SHARES_PER_SENDER):
            study = SHARED_STUDIES[i * SHARES_PER_SENDER + j]
            started = time.perf_counter()
            response = await client.post(
                "/api/shares",
                json=share_body(recipient, study.study_uid),
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code != 201:
                errors.append(f"{response.status_code} {response.text[:100]}")
                continue
            answered.append(time.perf_counter() - started)
            bucket = response.json()["bucket_id"]
            seen = opened = None
            deadline = started + 30
            while (seen is None or opened is None) and time.perf_counter() < deadline:
                if seen is None:
                    listed = await client.get(
                        "/api/shared-with-me", params={"limit": 200}, headers=seen_by
                    )
                    if listed.status_code == 200 and any(
                        item["bucket_id"] == bucket for item in listed.json()["items"]
                    ):
                        seen = time.perf_counter() - started
                if opened is None:
                    metadata = await client.get(
                        f"/dicomweb/studies/{study.study_uid}/metadata", headers=seen_by
                    )
                    if metadata.status_code == 200:
                        opened = time.perf_counter() - started
                await asyncio.sleep(0.01)
            if seen is None or opened is None:
                errors.append(f"{bucket}: not {'visible' if seen is None else 'open'} in 30 s")
            if seen is not None:
                visible.append(seen)
            if opened is not None:
                openable.append(opened)

    await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    command_p50 = statistics.median(answered) * 1e3 if answered else float("nan")
    failed = f"; {len(errors)} failed ({errors[0]})" if errors else ""
    seen_p50, seen_p99 = percentiles(visible)
    open_p50, open_p99 = percentiles(openable)
    return [
        Figure(
            "share -> visible in recipient list, p99",
            seen_p99,
            None,
            "ms",
            "p99 <= 500 ms",
            seen_p99 <= 500 and not errors,
            f"p50 {seen_p50:.0f} ms (command answered: p50 {command_p50:.0f} ms); "
            f"{len(visible)} shares, {SENDERS} concurrent senders{failed}",
        ),
        Figure(
            "share -> recipient can open the images (WADO-RS metadata 200), p99",
            open_p99,
            None,
            "ms",
            "p99 <= 300 ms",
            open_p99 <= 300 and not errors,
            f"p50 {open_p50:.0f} ms; through the relay, Kafka and the study store's access "
            f"model; {len(openable)} shares, {SENDERS} concurrent senders{failed}",
        ),
    ]


async def prepare_and_share(
    platform: LocalPlatform, part10: bytes, only: frozenset[str]
) -> tuple[dict, list[Figure]]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, timeout=60, limits=limits, trust_env=False
    ) as client:
        users = await setup(client, platform, part10)
        if "viewer" in only:
            await viewer_frames.upload_and_share(
                client,
                call,
                until,
                users["admin_token"],
                users["sender_tokens"][0],
                users["recipient_ids"][0],
                users["recipient_tokens"][0],
            )
        if "share" not in only:
            return users, []
        await upload_shared_studies(client, users)
        return users, await share_latency(client, users)


async def upload_shared_studies(client: httpx.AsyncClient, users: dict) -> None:
    """The share figures' studies (one small image each), in one STOW-RS request, and wait
    until the share service knows the last of them (a share of it to a warm-up account)."""
    body, content_type = multipart_related([instance(s, 1, 1) for s in SHARED_STUDIES])
    await until(
        lambda: call(
            client,
            "POST",
            "/dicomweb/studies",
            users["admin_token"],
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        ),
        "the share figures' studies",
    )
    last = SHARED_STUDIES[-1].study_uid
    await until(
        lambda: call(
            client,
            "POST",
            "/api/shares",
            users["sender_tokens"][0],
            json=share_body(users["warm_up_id"], last),
        ),
        "the share service to know the share figures' studies",
    )


def platform_figures(only: frozenset[str]) -> list[Figure]:
    run_dir = Path(tempfile.mkdtemp(prefix="studyshare-bench-platform-"))
    part10 = instance(STUDY, 1, 1, size=IMAGE_SIZE)
    static = run_dir / "static"
    static.mkdir(parents=True, exist_ok=True)
    (static / "instance.dcm").write_bytes(part10)
    frames = viewer_frames.write_static_frames(static)
    port = infra.free_port()
    baseline = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.baseline_app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--timeout-keep-alive",
            "75",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).parents[1],
    )
    platform = BenchPlatform(run_dir, ready_timeout=240)
    try:
        infra.wait_for_port(port, 30.0, baseline)
        with nginx.static_files(static, run_dir) as nginx_url:
            platform.extra_routes = {
                "/bench": f"http://127.0.0.1:{port}",
                "/bench-nginx": nginx_url,
            }
            with platform:
                users, latency = asyncio.run(prepare_and_share(platform, part10, only))
                figures = []
                if only & {"access", "wado"}:
                    token = users["recipient_tokens"][0]
                    figures = access_and_retrieve(
                        platform.gateway_url, nginx_url, token, len(part10), only
                    )
                if "viewer" in only:
                    figures.append(
                        asyncio.run(
                            viewer_frames.measure(
                                platform.gateway_url, users["recipient_tokens"][0], frames
                            )
                        )
                    )
                if "hot" in only:  # last: it restarts the study store's API
                    figures.append(hot_routes_figure(platform, users["recipient_tokens"][0]))
                return [*figures, *latency]
    finally:
        stop_processes([baseline], 10)
        shutil.rmtree(run_dir, ignore_errors=True)


def parse_only(argv: list[str] | None = None) -> frozenset[str]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        default=",".join(FIGURES),
        help=f"comma-separated figures to measure (default: all of {', '.join(FIGURES)}; "
        f"also {', '.join(EXTRA)})",
    )
    only = frozenset(name.strip() for name in parser.parse_args(argv).only.split(",") if name)
    if unknown := only - set(FIGURES) - set(EXTRA):
        parser.error(f"unknown figures: {', '.join(sorted(unknown))}")
    return only


def main() -> None:
    only = parse_only()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run bench/install.sh")
    from bench import audit_replay, cstore, relay, scale

    started = time.monotonic()
    figures: list[Figure] = []
    if only & {"relay", "audit", "cstore"}:
        with local_infra() as env:
            if "relay" in only:
                figures.append(asyncio.run(relay.measure(env)))
            if "audit" in only:
                figures.append(asyncio.run(audit_replay.measure(env)))
            if "cstore" in only:
                figures.append(cstore.measure(env))
    if only & {"access", "wado", "share", "viewer", "hot"}:
        figures = [*platform_figures(only), *figures]
    curves = scale.measure() if "scale" in only else []
    print()
    print(f"StudyShare benchmarks, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    if figures:
        print()
        print(render(figures))
    if curves:
        print()
        print(scale.report(curves, scale.SIZES))
    print()
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
