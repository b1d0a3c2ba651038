"""The image viewer's access pattern (issue 19, point 4): a 300-frame series read frame by frame
(WADO-RS `.../frames/1` of each instance, as OHIF's stack viewport does) with 6 requests at
once, a browser's limit per host; against the same frames as static files served by nginx
through the same gateway, read the same way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.harness import Figure
from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related, stable_uid

FRAMES = 300
CONCURRENT = 6
ROUNDS = 3
SIZE = 512  # a CT slice's matrix; 8 bit here, 256 KiB a frame
UPLOAD_BATCH = 50
STUDY = DemoStudy(
    "bench-viewer", "BENCH-0002", "Bench^Viewer", "19700101", "F", "Bench CT series", "CT",
    "20260101", "ACC-V1",
)  # fmt: skip
FRAME_MEDIA = 'multipart/related; type="application/octet-stream"'


def frame_paths() -> list[str]:
    series = stable_uid(f"{STUDY.key}/1")
    return [
        f"/dicomweb/studies/{STUDY.study_uid}/series/{series}/instances/"
        f"{stable_uid(f'{STUDY.key}/1/{n}')}/frames/1"
        for n in range(1, FRAMES + 1)
    ]


async def upload_and_share(
    client: httpx.AsyncClient,
    call: Callable[..., Awaitable[httpx.Response]],
    until: Callable[..., Awaitable[object]],
    uploader: str,
    sender: str,
    recipient_id: str,
    recipient: str,
) -> None:
    """The series stored (STOW-RS, 50 instances a request) and shared with the recipient."""
    for first in range(1, FRAMES + 1, UPLOAD_BATCH):
        parts = [instance(STUDY, 1, n, size=SIZE) for n in range(first, first + UPLOAD_BATCH)]
        body, content_type = multipart_related(parts)
        headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
        await call(client, "POST", "/dicomweb/studies", uploader, content=body, headers=headers)
    share = {
        "study_uids": [STUDY.study_uid],
        "recipients": [{"kind": "user", "id": recipient_id}],
        "access_level": "images_report_read",
        "reason": "benchmark",
        "patient_agreed": True,
        "two_factor": False,
        "send_mail": False,
    }
    await until(lambda: call(client, "POST", "/api/shares", sender, json=share), "the share")
    metadata = f"/dicomweb/studies/{STUDY.study_uid}/metadata"
    await until(lambda: call(client, "GET", metadata, recipient), "the recipient's access")


async def frames_per_second(
    gateway: str, paths: list[str], headers: dict[str, str]
) -> tuple[float, int, int]:
    """(frames/s, bytes of one frame, non-200 answers) over `ROUNDS` reads of every path."""
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    queue: asyncio.Queue[str] = asyncio.Queue()
    sizes: list[int] = []
    bad = 0

    async with httpx.AsyncClient(
        base_url=gateway, headers=headers, limits=limits, timeout=60, trust_env=False
    ) as client:

        async def reader() -> None:
            nonlocal bad
            while not queue.empty():
                response = await client.get(queue.get_nowait())
                if response.status_code != 200:
                    bad += 1
                sizes.append(len(response.content))

        await client.get(paths[0])  # warm the connection and the route
        for path in paths * ROUNDS:
            queue.put_nowait(path)
        started = time.perf_counter()
        await asyncio.gather(*(reader() for _ in range(CONCURRENT)))
        elapsed = time.perf_counter() - started
    return len(paths) * ROUNDS / elapsed, max(sizes), bad


def write_static_frames(static: Path) -> list[str]:
    """The frames' pixel bytes as files for nginx (`/bench-nginx/frames/N`)."""
    frames = static / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    pixels = bytes((x * 255 // (SIZE - 1)) for _ in range(SIZE) for x in range(SIZE))
    for n in range(1, FRAMES + 1):
        (frames / str(n)).write_bytes(pixels)
    return [f"/bench-nginx/frames/{n}" for n in range(1, FRAMES + 1)]


async def measure(gateway: str, recipient: str, static_paths: list[str]) -> Figure:
    ours, frame_bytes, bad_ours = await frames_per_second(
        gateway,
        frame_paths(),
        {"Authorization": f"Bearer {recipient}", "Accept": FRAME_MEDIA},
    )
    base, _, bad_base = await frames_per_second(gateway, static_paths, {})
    note = (
        f"{FRAMES} frames of {SIZE}x{SIZE} ({frame_bytes // 1024} KiB with multipart framing), "
        f"{CONCURRENT} at once, {ROUNDS} rounds"
    )
    if bad_ours or bad_base:
        note += f"; non-200: {bad_ours} ours, {bad_base} nginx"
    return Figure(
        "viewer: a series frame by frame vs nginx static files, through the gateway",
        ours,
        base,
        "frames/s",
        ">= 0.8 x nginx",
        ours / base >= 0.8 and not bad_ours,
        note,
    )
