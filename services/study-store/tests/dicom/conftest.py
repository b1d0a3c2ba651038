"""Fixtures of the DICOM half: generated DICOM files, a test app with our routers, and test
doubles of the OTHER half of the study store (the access model and the access log)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from studyshare.access_policy.decision import AccessDecision
from studyshare.plumbing.http import create_app
from studyshare.plumbing.infra import free_port, storescp
from studyshare.plumbing.mongo import mongo_client
from studyshare.study_store.domain.serving import VisibleStudies
from studyshare.study_store.entrypoints import dicomweb, downloads, forwarding_api
from studyshare.study_store.service_layer.retrieval import DicomStores
from studyshare.study_store.settings import StudyStoreSettings


def write_study(
    directory: Path,
    *,
    patient_name: str = "Doe^Jane",
    patient_id: str = "PID-0001",
    birth_date: str = "19800214",
    modality: str = "CT",
    series: int = 2,
    per_series: int = 2,
    study_uid: str | None = None,
    study_date: str = "20240315",
    description: str = "CT THORAX",
) -> tuple[str, list[Path]]:
    """Small valid 64x64 MONOCHROME2 images of one study; returns (study uid, files)."""
    study_uid = study_uid or generate_uid()
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(7)
    for s in range(series):
        series_uid = generate_uid()
        for i in range(per_series):
            ds = Dataset()
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = birth_date
            ds.PatientSex = "F"
            ds.PatientAddress = "Main Street 1, Gent"
            ds.OtherPatientIDs = "OTHER-1"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.SOPClassUID = sop_class
            ds.Modality = modality
            ds.BurnedInAnnotation = "NO"  # served on anonymized shares too
            ds.StudyDate = study_date
            ds.StudyTime = "101500"
            ds.AccessionNumber = f"ACC{secrets.randbelow(10**6):06d}"
            ds.StudyDescription = description
            ds.StudyID = "1"
            ds.ReferringPhysicianName = "House^Gregory"
            ds.SeriesNumber = s + 1
            ds.InstanceNumber = i + 1
            ds.SeriesDescription = f"series {s + 1}"
            ds.Rows = ds.Columns = 64
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.RescaleIntercept = -1024
            ds.RescaleSlope = 1
            ds.WindowCenter = 40
            ds.WindowWidth = 400
            pixels = (rng.integers(0, 4095, size=(64, 64))).astype(np.uint16)
            pixels[:32, :] = 1024 + 40  # upper half at the window centre
            ds.PixelData = pixels.tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = sop_class
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            path = directory / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return study_uid, paths


def no_access(study_uid: str) -> AccessDecision:
    return AccessDecision(
        study_uid=study_uid,
        images=False,
        report="none",
        download=False,
        anonymized=False,
        via=None,
        reason="you have no access to this study",
        refusal="no_grant",
    )


class AccessModelDouble:
    """Stands in for the access decision read model of the other half of the study store."""

    fresh = True  # its lease holds: it may decide

    def __init__(self) -> None:
        self.decisions: dict[tuple[str, str], AccessDecision] = {}
        self.glass: set[tuple[str, str]] = set()
        """(caller, study) pairs where the caller may break the glass."""
        self.studies: dict[str, dict[str, Any]] = {}
        """The study documents this process holds (their `seq` versions the instance cache)."""

    def allow(self, sub: str, study_uid: str, **fields: Any) -> AccessDecision:
        values: dict[str, Any] = {
            "images": True,
            "report": "read",
            "download": False,
            "anonymized": False,
            "via": "department",
            "reason": "own department",
        }
        values.update(fields)
        decision = AccessDecision(study_uid=study_uid, **values)
        self.decisions[(sub, study_uid)] = decision
        return decision

    async def decide(self, principal, study_uid: str) -> AccessDecision:
        return self.decisions.get((principal.sub, study_uid)) or no_access(study_uid)

    async def may_break_the_glass(self, principal, study_uid: str) -> bool:
        return (principal.sub, study_uid) in self.glass

    async def visible_studies(self, principal) -> VisibleStudies:
        if "service_desk" in getattr(principal, "roles", ()):
            return VisibleStudies(every=True)
        mine = (d for (sub, _), d in self.decisions.items() if sub == principal.sub)
        return VisibleStudies.of(mine)

    async def study(self, study_uid: str) -> dict[str, Any] | None:
        known = any(uid == study_uid for _, uid in self.decisions)
        return self.studies.get(study_uid) or ({"study_uid": study_uid} if known else None)

    def peek_study(self, study_uid: str) -> dict[str, Any] | None:
        return self.studies.get(study_uid)

    async def remapped_study(self, remapped_uid: str) -> tuple[str, str] | None:
        return None


@dataclass
class AccessLogRecorder:
    """Collects `record(decision, principal, action)` calls (the other half coalesces them)."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def record(self, decision: AccessDecision, principal, action: str) -> None:
        self.calls.append((decision.study_uid, principal.sub, action))

    def actions(self, study_uid: str) -> list[str]:
        return [a for s, _, a in self.calls if s == study_uid]


@dataclass
class DicomApp:
    app: Any
    client: httpx.AsyncClient
    settings: StudyStoreSettings
    access: AccessModelDouble
    access_log: AccessLogRecorder
    tokens: Any

    @property
    def stores(self) -> DicomStores:
        return self.app.state.dicom


def study_settings(
    real_infra, database: str, tmp_path: Path, **overrides: Any
) -> StudyStoreSettings:
    values: dict[str, Any] = {
        "database": database,
        "blob_dir": tmp_path / "blobs",
        "anonymization_secret": "test-anonymization-secret",
        "forward_backoff_s": 0.05,
        "forward_max_attempts": 2,
        "forward_timeout_s": 5.0,
        "scu_ae_title": "STUDYSHARE",
    }
    values.update(overrides)
    return real_infra.settings(StudyStoreSettings, **values)  # type: ignore[return-value]


def build_app(settings: StudyStoreSettings):
    @asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        client = mongo_client(settings)
        await dicomweb.install_dicom(app, client[settings.database_name], settings)
        yield
        await client.close()

    return create_app(
        settings,
        title="study-store (DICOM half, test)",
        routers=[dicomweb.router, downloads.router, forwarding_api.router],
        lifespan=lifespan,
    )


@pytest.fixture
def blob_backend() -> str:
    """The blob store of the DICOM tests: the directory, or GridFS for the whole suite with
    `STUDYSHARE_TEST_BLOB_BACKEND=gridfs`; a test may parametrize `blob_backend` itself."""
    return os.environ.get("STUDYSHARE_TEST_BLOB_BACKEND", "directory")


@pytest.fixture
def settings(real_infra, mongo_db, tmp_path, blob_backend) -> StudyStoreSettings:
    return study_settings(real_infra, mongo_db.name, tmp_path, blob_backend=blob_backend)


@pytest.fixture
async def dicom_app(settings, test_tokens) -> AsyncIterator[DicomApp]:
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        test_tokens.install(app)
        access, access_log = AccessModelDouble(), AccessLogRecorder()
        app.state.access_model = access
        app.state.access_log = access_log
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://study-store") as client:
            yield DicomApp(app, client, settings, access, access_log, test_tokens)


@pytest.fixture
def study_files(tmp_path) -> tuple[str, list[Path]]:
    return write_study(tmp_path / "study")


def multipart(files: list[Path] | list[bytes], boundary: str = "b0undary-xyz") -> tuple[bytes, str]:
    body = b""
    for item in files:
        data = item.read_bytes() if isinstance(item, Path) else item
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def today() -> date:
    return date.today()


@dataclass
class ServedApp:
    url: str
    settings: StudyStoreSettings
    access: AccessModelDouble
    access_log: AccessLogRecorder
    tokens: Any


@pytest.fixture
def served_app(settings, test_tokens):
    """The app on a real port (uvicorn in a thread), for clients that speak HTTP only."""
    import threading
    import time

    import uvicorn

    app = build_app(settings)
    access, access_log = AccessModelDouble(), AccessLogRecorder()
    app.state.access_model = access
    app.state.access_log = access_log
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    test_tokens.install(app)
    yield ServedApp(f"http://127.0.0.1:{port}", settings, access, access_log, test_tokens)
    server.should_exit = True
    thread.join(15)


class StoreSCP:
    """dcmtk's storescp on a port, started and stopped by its PID."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> StoreSCP:
        self.proc = storescp(self.port, self.directory, "PACS")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def received(self) -> list:
        return [dcmread(p) for p in sorted(self.directory.iterdir()) if p.is_file()]


@pytest.fixture
def pacs(tmp_path):
    scp = StoreSCP(free_port(), tmp_path / "pacs").start()
    yield scp
    scp.stop()
