"""Small valid DICOM files, made in code (for demo data and tests)."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

#: UUID-derived UIDs (`2.25.<int>`) are valid and need no registered root
DEMO_NAMESPACE = uuid.UUID("6b1f7a52-3c2e-4f61-9d0e-2f6a1c9e5d10")


def stable_uid(name: str) -> str:
    """The same UID for the same name, every run (so the demo upload is idempotent)."""
    return f"2.25.{uuid.uuid5(DEMO_NAMESPACE, name).int}"


@dataclass(frozen=True)
class DemoStudy:
    key: str
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    description: str
    modality: str
    study_date: str
    accession: str

    @property
    def study_uid(self) -> str:
        return stable_uid(f"{self.key}/study")


def instance(study: DemoStudy, series: int = 1, number: int = 1, size: int = 16) -> bytes:
    """One Secondary Capture image (size x size, 8-bit gradient) of `study`, Part 10 bytes."""
    sop_uid = stable_uid(f"{study.key}/{series}/{number}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = stable_uid("studyshare-devstack")

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = stable_uid(f"{study.key}/{series}")
    ds.PatientID = study.patient_id
    ds.PatientName = study.patient_name
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.StudyDate = study.study_date
    ds.StudyTime = "101500"
    ds.StudyDescription = study.description
    ds.SeriesDescription = f"{study.description} series {series}"
    ds.AccessionNumber = study.accession
    ds.StudyID = study.accession[-8:]
    ds.Modality = study.modality
    ds.SeriesNumber = series
    ds.InstanceNumber = number
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((x * 255 // max(1, size - 1)) for _ in range(size) for x in range(size))

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart_related(parts: list[bytes], boundary: str | None = None) -> tuple[bytes, str]:
    """A STOW-RS body and its Content-Type."""
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
        for part in parts
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'
