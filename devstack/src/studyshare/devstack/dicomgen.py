"""Small valid DICOM files, made in code (for demo data and tests)."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

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


#: the image storage class of a demo study's modality; any other is a Secondary Capture
IMAGE_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}


def instance(study: DemoStudy, series: int = 1, number: int = 1, size: int = 16) -> bytes:
    """One image (size x size, 8-bit gradient) of `study`, Part 10 bytes: a CT or MR image for
    those modalities, saying it has no burned-in text (so an anonymized share may show it),
    else a Secondary Capture (which an anonymized share never shows)."""
    sop_uid = stable_uid(f"{study.key}/{series}/{number}")
    sop_class = IMAGE_CLASSES.get(study.modality, SecondaryCaptureImageStorage)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = stable_uid("studyshare-devstack")

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
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
    if sop_class == SecondaryCaptureImageStorage:
        ds.ConversionType = "WSD"
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BurnedInAnnotation = "NO"
        if study.modality == "CT":
            ds.RescaleIntercept = 0
            ds.RescaleSlope = 1
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


def write_images(study: DemoStudy, directory: Path, count: int, size: int = 16) -> list[Path]:
    """`count` images of `study` (one series) as Part 10 files in `directory`, in order."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [directory / f"{number:05d}.dcm" for number in range(1, count + 1)]
    for number, path in enumerate(files, 1):
        path.write_bytes(instance(study, 1, number, size=size))
    return files


def multipart_related(parts: list[bytes], boundary: str | None = None) -> tuple[bytes, str]:
    """A STOW-RS body and its Content-Type."""
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
        for part in parts
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


#: the marker every identifying text value of `annex_e_instance` carries
LEAK = "LEAK"
#: the date every DA/DT attribute of `annex_e_instance` holds
LEAK_DATE = "19710203"


def annex_e_tags() -> list[int]:
    """The attributes of the DICOM PS3.15 Annex E Basic Application Level Confidentiality
    Profile (table E.1-1, as packaged by `dicom-anonymizer`) that pydicom's dictionary knows."""
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table
    from pydicom.datadict import dictionary_has_tag

    tags = {(group << 16) | element for group, element, *_ in table.ALL_TAGS}
    return sorted(t for t in tags if t >> 16 not in (0x0000, 0x0002) and dictionary_has_tag(t))


def _leak_value(tag: int, vr: str, key: str) -> Any:
    text = f"{LEAK}{tag:08X}"
    if vr == "PN":
        return f"{LEAK}^PN{tag:08X}"
    if vr == "UI":
        return stable_uid(f"{key}/leak/{tag:08X}")
    if vr == "DA":
        return LEAK_DATE
    if vr == "DT":
        return f"{LEAK_DATE}101500"
    if vr == "TM":
        return "101500"
    if vr == "AS":
        return "042Y"
    if vr in ("DS", "FD", "FL"):
        return "7.5" if vr == "DS" else 7.5
    if vr in ("IS", "US", "SS", "UL", "SL"):
        return "7" if vr == "IS" else 7
    if vr in ("OB", "OW", "UN"):
        return f"{text}-BYTES".encode()
    if vr == "UR":
        return f"http://leak.example/{text}"
    if vr == "SQ":
        item = Dataset()
        item.CodeMeaning = f"{text}-ITEM"
        return [item]
    return text


def annex_e_instance(
    study: DemoStudy,
    series: int = 1,
    number: int = 1,
    *,
    modality: str = "CT",
    burned_in: str | None = "NO",
    size: int = 16,
) -> bytes:
    """One image of `study` with every PS3.15 Annex E attribute filled: identifying text holds
    `LEAK`, dates `LEAK_DATE`, UIDs their own value, plus a private block holding `LEAK`. For
    checking that nothing identifying survives anonymization. `burned_in=None` leaves
    BurnedInAnnotation out."""
    from pydicom.datadict import dictionary_VR
    from pydicom.uid import CTImageStorage, UltrasoundImageStorage

    sop_class = UltrasoundImageStorage if modality == "US" else CTImageStorage
    sop_uid = stable_uid(f"{study.key}/{series}/{number}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = stable_uid("studyshare-devstack")

    ds = Dataset()
    ds.file_meta = meta
    for tag in annex_e_tags():
        vr = dictionary_VR(tag)
        vr = vr.split(" or ")[0]
        ds.add_new(tag, vr, _leak_value(tag, vr, study.key))
    block = ds.private_block(0x0009, f"{LEAK} CREATOR", create=True)
    block.add_new(0x01, "LO", f"{LEAK}PRIVATE")
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = stable_uid(f"{study.key}/{series}")
    ds.PatientID = study.patient_id
    ds.PatientName = study.patient_name
    ds.PatientBirthDate = study.birth_date
    ds.StudyDate = study.study_date
    ds.AccessionNumber = study.accession
    ds.Modality = modality
    ds.SeriesNumber = series
    ds.InstanceNumber = number
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
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
