"""What the DICOM-side security tests share: a department with a sending physician, studies
with a report instance (a DICOM SR), STOW-RS uploads, and dcmtk's storescp as a real PACS."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from pydicom import dcmread
from pydicom.uid import generate_uid

from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related
from studyshare.plumbing.infra import free_port, storescp

from ..storykit import Gateway, Person, ok, unique, wait_for

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def department_with_sender(api: Gateway, desk: dict[str, str]) -> SimpleNamespace:
    """A radiology department, its admin and a sending physician."""
    department_id = api.radiology_department(desk, f"Radiology {unique('')}")
    admin = api.register(
        desk,
        "Rita",
        roles=["department_admin", "department_staff"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    sender = api.register(
        admin.headers, "Pieter", roles=["physician"], department_ids=[department_id]
    )
    return SimpleNamespace(department_id=department_id, admin=admin, sender=sender)


def new_study(description: str = "CT THORAX") -> DemoStudy:
    key = unique("sec-")
    return DemoStudy(
        key, key.upper(), "Secure^Alice", "19800214", "F", description, "OT", "20260301", key[-8:]
    )


def report_instance(study: DemoStudy) -> bytes:
    """A Basic Text SR (a report) in its own series of `study`."""
    ds = dcmread(io.BytesIO(instance(study, 9, 1)))
    for keyword in (
        "PixelData",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "ConversionType",
    ):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def stow(api: Gateway, by: Person, parts: list[bytes], path: str = "/dicomweb/studies"):
    body, content_type = multipart_related(parts)
    headers = {**by.headers, "Content-Type": content_type, "Accept": "application/dicom+json"}
    return api.client.post(path, content=body, headers=headers)


def upload_with_report(api: Gateway, by: Person) -> DemoStudy:
    """Two images and a DICOM SR report, stored and visible to the uploader."""
    study = new_study()
    parts = [instance(study, 1, 1), instance(study, 1, 2), report_instance(study)]
    response = stow(api, by, parts)
    assert response.status_code == 200, (response.status_code, response.text)
    wait_for(
        lambda: api.study(by, study.study_uid).status_code == 200,
        f"study {study.study_uid} in the study store",
    )
    return study


def retrieve_instance(
    client: httpx.Client, who: Person, study: DemoStudy, series: int, number: int
) -> bytes:
    """The instance as WADO-RS serves it (the one part of the multipart answer)."""
    from studyshare.devstack.dicomgen import stable_uid

    url = (
        f"/dicomweb/studies/{study.study_uid}/series/{stable_uid(f'{study.key}/{series}')}"
        f"/instances/{stable_uid(f'{study.key}/{series}/{number}')}"
    )
    r = client.get(
        url, headers={**who.headers, "Accept": 'multipart/related; type="application/dicom"'}
    )
    assert r.status_code == 200, (r.status_code, r.text)
    boundary = r.headers["content-type"].split("boundary=")[1].strip('"')
    part = r.content.split(f"--{boundary}".encode())[1]
    return part.split(b"\r\n\r\n", 1)[1][: -len(b"\r\n")]


@dataclass
class Pacs:
    """dcmtk's storescp (AE title PACS) on a free port, started and stopped by its PID."""

    directory: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self) -> Pacs:
        self.port = free_port()
        self.proc = storescp(self.port, self.directory, "PACS")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def received(self, study_uid: str) -> list[Any]:
        found = []
        for path in sorted(self.directory.iterdir()):
            if path.is_file():
                ds = dcmread(path, stop_before_pixels=True)
                if str(ds.StudyInstanceUID) == study_uid:
                    found.append(ds)
        return found

    def department(self, api: Gateway, desk: dict[str, str]) -> str:
        """A department of kind pacs with this endpoint; its id."""
        body = {
            "name": f"PACS {unique('')}",
            "country": "be",
            "kind": "pacs",
            "pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": self.port},
        }
        return ok(api.client.post("/api/departments", json=body, headers=desk), 201)[
            "department_id"
        ]
