"""Two study-store API processes on the GridFS blob store (issue 17, point 1): an instance
stored through one is served by the other, and by both again after both restarted; a large
multi-frame instance streams in and out of them without being held whole in memory (their
peak resident memory grows by far less than the instance's size).

Real processes (`python -m studyshare.study_store api|relay|worker`) against the real broker
and database; each API process is given a blob directory of its own that must never appear.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from studyshare.plumbing.infra import free_port
from studyshare.plumbing.testing import unique

from .conftest import multipart, write_study

pytestmark = pytest.mark.infra

DEPARTMENT = "dep_shared_blobs"
FRAMES, ROWS, COLUMNS = 8, 2048, 1536  # 16-bit: 6 MiB a frame, 48 MiB in all
MiB = 1024 * 1024


@pytest.fixture
def jwks_url(test_tokens) -> Iterator[str]:
    """The test signer's JWKS over HTTP, where the API processes fetch identity's."""
    body = json.dumps(test_tokens.signer.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    thread.join(5)


def large_instance(path: Path, study_uid: str) -> tuple[bytes, Path]:
    """A 48 MiB multi-frame CT of the study; returns (its 5th frame, the file)."""
    rng = np.random.default_rng(17)
    pixels = rng.integers(0, 4096, size=(FRAMES, ROWS, COLUMNS), dtype=np.uint16)
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "PID-0001", "19800214"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SOPInstanceUID, ds.SOPClassUID = generate_uid(), CTImageStorage
    ds.Modality, ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "CT", "20240315", 9, 1
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, FRAMES
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return pixels[4].tobytes(), path


def peak_rss(proc: subprocess.Popen) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class Api:
    """One API process of the study store and an HTTP client for it."""

    def __init__(self, start, name: str, log: Path) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen = start("api", name, self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log

    async def ready(self, timeout: float = 420.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            while True:
                assert self.proc.poll() is None, f"the API process ended: {self.tail()}"
                try:
                    answer = await client.get("/readyz")
                    if answer.status_code == 200:
                        return
                except httpx.TransportError:
                    answer = None
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"not ready: {answer and answer.text} {self.tail()}")
                await asyncio.sleep(0.25)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def study_store(service_processes, settings, jwks_url, tmp_path):
    """Starts study-store processes on GridFS in the test's database."""
    service = unique("study-store")

    def start(command: str, name: str, port: int | None = None) -> subprocess.Popen:
        env = service_processes.env(
            settings.database_name,
            service,
            blob_backend="gridfs",
            blob_dir=str(tmp_path / f"{name}-blobs"),  # never used: it must not appear
            anonymization_secret=settings.anonymization_secret,
            jwks_url=jwks_url,
            session_revocation_feed="false",  # not what this test is about
            **({"http_port": str(port)} if port else {}),
        )
        env["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-m", "studyshare.study_store", command]
        return service_processes.start(argv, env, name)

    return start


def part_content(body: bytes) -> bytes:
    """The content of the one part of a multipart/related answer."""
    head_end = body.index(b"\r\n\r\n") + 4
    tail = body.rindex(b"\r\n--")
    return body[head_end:tail]


async def retrieve(api: Api, path: str, headers: dict[str, str]) -> bytes:
    async with httpx.AsyncClient(base_url=api.url, timeout=120) as client:
        async with client.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200, (await response.aread())[:500]
            return part_content(b"".join([chunk async for chunk in response.aiter_bytes()]))


@pytest.mark.timeout(1500)  # six processes started, 48 MiB in and out: minutes on a busy machine
async def test_an_instance_stored_through_one_api_is_served_by_the_other_and_after_restarts(
    study_store, service_processes, test_tokens, tmp_path
):
    study_uid, small = write_study(tmp_path / "study", series=1, per_series=2)
    frame5, big = large_instance(tmp_path / "large.dcm", study_uid)
    big_bytes = big.read_bytes()
    header = dcmread(big, stop_before_pixels=True)
    sop, series = str(header.SOPInstanceUID), str(header.SeriesInstanceUID)
    instance = f"/dicomweb/studies/{study_uid}/series/{series}/instances/{sop}"
    staff = test_tokens.user("usr_shared", "department_staff", department_ids=[DEPARTMENT])

    study_store("relay", "relay")
    study_store("worker", "worker")
    logs = service_processes.log_dir
    first, second = (
        Api(study_store, "api-a", logs / "api-a.log"),
        Api(study_store, "api-b", logs / "api-b.log"),
    )
    await asyncio.gather(first.ready(), second.ready())

    async with httpx.AsyncClient(base_url=first.url, timeout=300) as client:

        async def store(files: list[Path]) -> None:
            body, content_type = multipart(files)
            answer = await client.post(
                "/dicomweb/studies", content=body, headers={**staff, "Content-Type": content_type}
            )
            assert answer.status_code == 200, answer.text

        # The small instances first: what a process loads on its first upload (modules, caches,
        # the database's connections) is not what storing the large one costs.
        await store(small)
        stored_from = peak_rss(first.proc)
        await store([big])
    storing = peak_rss(first.proc) - stored_from

    async def visible_on(api: Api) -> None:
        """Once the worker has projected the upload, the API's access model lets staff in."""
        status = None
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
            for _ in range(400):
                try:
                    answer = await client.get(
                        f"/dicomweb/studies/{study_uid}/metadata", headers=staff
                    )
                except httpx.TimeoutException:  # a busy machine
                    continue
                status = answer.status_code
                if status == 200 and len(answer.json()) == 3:
                    return
                await asyncio.sleep(0.25)
        raise AssertionError(f"study not visible on {api.url}: {status}")

    await visible_on(second)
    served_from = peak_rss(second.proc)
    served = await retrieve(second, instance, staff)
    assert hashlib.sha256(served).digest() == hashlib.sha256(big_bytes).digest()
    serving = peak_rss(second.proc) - served_from
    assert await retrieve(second, f"{instance}/frames/5", staff) == frame5
    framing = peak_rss(second.proc) - served_from
    print(
        f"peak RSS growth ({len(big_bytes) / MiB:.0f} MiB instance, {len(frame5) / MiB:.0f} MiB "
        f"frame): storing through A {storing / MiB:.1f} MiB, serving from B "
        f"{serving / MiB:.1f} MiB, then its 5th frame {framing / MiB:.1f} MiB"
    )
    assert storing < 16 * MiB, "the upload streams into GridFS"
    assert serving < 12 * MiB, "the instance streams out of GridFS"
    assert framing < len(frame5) + 12 * MiB, "a frame is read alone"

    first.stop()
    second.stop()
    again = [Api(study_store, name, logs / f"{name}.log") for name in ("api-c", "api-d")]
    await asyncio.gather(*(api.ready() for api in again))
    for api in again:
        await visible_on(api)
        served = await retrieve(api, instance, staff)
        assert hashlib.sha256(served).digest() == hashlib.sha256(big_bytes).digest()
        ds = dcmread(small[0])
        small_path = (
            f"/dicomweb/studies/{study_uid}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        assert await retrieve(api, small_path, staff) == small[0].read_bytes()
    assert not any(tmp_path.glob("*-blobs")), "no process wrote a blob to its own disk"
