"""DICOM facts the study store reads from instances, and the DICOM JSON model (PS3.18 F.2).

Pure: datasets in, plain values and JSON dicts out. Tags in DICOM JSON are 8-hex-digit keys
such as "0020000D"; a value is `{"vr": ..., "Value": [...]}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydicom import Dataset
from pydicom.tag import Tag

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")

# SOP classes whose objects carry a report (never served on anonymized shares, nor to viewers
# without report access).
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
ENCAPSULATED_CDA = "1.2.840.10008.5.1.4.1.1.104.2"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

STUDY_TAGS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "StudyID",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
)
SERIES_TAGS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
)

PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}


def is_uid(value: str | None) -> bool:
    return bool(value) and len(value) <= 64 and bool(UID_PATTERN.match(value))  # type: ignore[arg-type]


def is_report_class(sop_class_uid: str) -> bool:
    """SR documents and encapsulated PDF/CDA carry report text."""
    return sop_class_uid.startswith(SR_PREFIX) or sop_class_uid in {
        ENCAPSULATED_PDF,
        ENCAPSULATED_CDA,
    }


def tag_key(keyword: str) -> str:
    return f"{int(Tag(keyword)):08X}"


def parse_da(value: Any) -> date | None:
    """A DICOM DA (YYYYMMDD) as a date, or None when empty or malformed."""
    text = str(value or "").strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def initials(patient_name: Any) -> str:
    """'Doe^Jane' -> 'J.D.': given names first, then the family name; nothing else leaves."""
    text = str(patient_name or "")
    family, _, rest = text.partition("^")
    given = rest.split("^")[0] if rest else ""
    letters = [p[0].upper() for p in (given.split() + family.split()) if p and p[0].isalpha()]
    return "".join(f"{letter}." for letter in letters)


@dataclass(frozen=True)
class InstanceFacts:
    """What the store indexes about one instance."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    series_number: int | None
    instance_number: int | None
    number_of_frames: int
    has_pixels: bool
    burned_in: bool
    rows: int | None
    columns: int | None
    patient_id: str
    patient_name: str
    patient_birth_date: date | None
    study_date: date | None
    study_description: str
    accession_number: str | None

    @property
    def is_report(self) -> bool:
        return is_report_class(self.sop_class_uid)


class NotAnInstance(ValueError):
    """The object lacks the UIDs every stored instance needs."""


def facts(ds: Dataset) -> InstanceFacts:
    """Read the indexing facts of a dataset; raise NotAnInstance when UIDs are missing/bad."""
    uids = {
        k: str(ds.get(k, "") or "")
        for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
    }
    for keyword, value in uids.items():
        if not is_uid(value):
            raise NotAnInstance(f"{keyword} is missing or not a valid UID")

    def as_int(keyword: str) -> int | None:
        try:
            value = ds.get(keyword)
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    return InstanceFacts(
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        modality=str(ds.get("Modality", "") or "OT"),
        series_number=as_int("SeriesNumber"),
        instance_number=as_int("InstanceNumber"),
        number_of_frames=as_int("NumberOfFrames") or (1 if "PixelData" in ds else 0),
        has_pixels="PixelData" in ds,
        burned_in=str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES",
        rows=as_int("Rows"),
        columns=as_int("Columns"),
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        patient_birth_date=parse_da(ds.get("PatientBirthDate")),
        study_date=parse_da(ds.get("StudyDate")),
        study_description=str(ds.get("StudyDescription", "") or ""),
        accession_number=str(ds.get("AccessionNumber", "") or "") or None,
    )


def subset_json(data: dict[str, Any], keywords: tuple[str, ...]) -> dict[str, Any]:
    """The named top-level attributes of an instance's DICOM JSON (`instance_json`)."""
    keys = {tag_key(keyword) for keyword in keywords}
    return {key: value for key, value in data.items() if key in keys}


def instance_json(ds: Dataset, bulk_uri: str | None = None) -> dict[str, Any]:
    """Full DICOM JSON of an instance with pixel data replaced by a BulkDataURI."""
    stripped = Dataset()
    for tag in ds.keys():  # by tag: the pixel data of a spooled object is never read
        if tag in PIXEL_TAGS:
            continue
        stripped.add(ds[tag])
    try:
        data = stripped.to_json_dict(bulk_data_threshold=64 * 1024, bulk_data_element_handler=_drop)
    except Exception:
        data = _lenient_json(stripped)
    if bulk_uri and "PixelData" in ds:
        vr = ds.get_item(0x7FE00010).VR or "OW"
        data["7FE00010"] = {"vr": vr if vr in ("OB", "OW") else "OW", "BulkDataURI": bulk_uri}
    return data


def _drop(_element: Any) -> str:
    return ""


def _lenient_json(ds: Dataset) -> dict[str, Any]:
    """Element by element, leaving out the few a malformed object cannot encode."""
    out: dict[str, Any] = {}
    for element in ds:
        single = Dataset()
        single.add(element)
        try:
            out.update(
                single.to_json_dict(bulk_data_threshold=64 * 1024, bulk_data_element_handler=_drop)
            )
        except Exception:  # noqa: S112 - one bad element must not hide the others
            continue
    return out


def json_value(data: dict[str, Any], keyword: str) -> Any:
    """The first value of an attribute in DICOM JSON (PN as its alphabetic string)."""
    element = data.get(tag_key(keyword))
    if not element or not element.get("Value"):
        return None
    value = element["Value"][0]
    if isinstance(value, dict) and "Alphabetic" in value:
        return value["Alphabetic"]
    return value


def json_set(data: dict[str, Any], keyword: str, vr: str, values: list[Any]) -> None:
    data[tag_key(keyword)] = {"vr": vr, "Value": values} if values else {"vr": vr}
