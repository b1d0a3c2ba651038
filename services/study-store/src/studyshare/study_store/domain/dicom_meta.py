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
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
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
    return bool(value) and len(value) <= 64 and bool(UID_PATTERN.fullmatch(value))  # type: ignore[arg-type]


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


#: an element whose value is longer than this (bytes, as the object encodes it) is left out of
#: an instance's metadata; its length is looked at before its value is read
INLINE_LIMIT = 16 * 1024
#: an instance's metadata stays under this (BSON bytes): the largest top-level elements (long
#: sequences) are left out until it does; a sequence longer than this is left out unread
METADATA_LIMIT = 8 * 1024 * 1024
#: sequences nested deeper than this: the object is refused (`TooDeeplyNested`). Each level
#: takes three levels of the instance document (element, "Value", item): 24 keep it at about
#: 80 of the 100 MongoDB stores
MAX_SEQUENCE_DEPTH = 24
_UNDEFINED_LENGTH = 0xFFFFFFFF


class TooDeeplyNested(ValueError):
    """The object's sequences nest deeper than its metadata may (`MAX_SEQUENCE_DEPTH`)."""


def instance_json(ds: Dataset, bulk_uri: str | None = None) -> dict[str, Any]:
    """The DICOM JSON of an instance (the metadata WADO-RS serves), pixel data as a BulkDataURI.

    The store serves bulk data for the pixel data alone (its frames), so no other element can
    honestly be a BulkDataURI: an element longer than `INLINE_LIMIT` (a long text, a private
    binary blob, an overlay, an encapsulated document) is left out of the metadata, as PS3.18
    F.2 allows, and so are the largest top-level elements (long sequences: the contours of an
    RTSTRUCT) while the metadata would exceed `METADATA_LIMIT`. The whole object, those
    elements included, is what WADO-RS retrieves. An element's length is read before its
    value, so a deferred one left out is never read. Raises `TooDeeplyNested` for sequences
    nested deeper than `MAX_SEQUENCE_DEPTH` (MongoDB could not store the document): such an
    object is refused as one that cannot be parsed. An element pydicom cannot encode is left
    out too: one bad element must not hide the others."""
    data = _dataset_json(ds, 0, skip=PIXEL_TAGS)  # the pixel data of a spooled object: unread
    _fit(data, METADATA_LIMIT)
    if bulk_uri and "PixelData" in ds:
        vr = ds.get_item(0x7FE00010, keep_deferred=True).VR or "OW"
        data["7FE00010"] = {"vr": vr if vr in ("OB", "OW") else "OW", "BulkDataURI": bulk_uri}
    return data


def _dataset_json(
    ds: Dataset, depth: int, skip: frozenset[int] | set[int] = frozenset()
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in ds.keys():
        if tag in skip:
            continue
        try:
            element = _element_json(ds, tag, depth)
        except TooDeeplyNested:
            raise
        except Exception:  # noqa: S112 - one bad element must not hide the others
            continue
        if element is not None:
            out[f"{tag:08X}"] = element
    return out


def _element_json(ds: Dataset, tag: int, depth: int) -> dict[str, Any] | None:
    """One element's DICOM JSON, or None when it is left out (too long)."""
    raw = ds.get_item(tag, keep_deferred=True)
    if isinstance(raw, RawDataElement):  # not read, or read but not decoded: its length first
        length = _raw_length(raw)
        if length is None or length > INLINE_LIMIT:
            if length is None or length > METADATA_LIMIT or _raw_vr(raw) != "SQ":
                return None
    element = ds[tag]  # read (if deferred) and decoded
    if element.VR == "SQ":
        items = list(element.value or ())
        if items and depth >= MAX_SEQUENCE_DEPTH:
            raise TooDeeplyNested(
                f"sequences are nested more than {MAX_SEQUENCE_DEPTH} deep (at {Tag(tag)})"
            )
        if raw is element and depth == 0 and _items_length(items) > METADATA_LIMIT:
            return None  # of undefined length: its items are read, but not decoded
        return {"vr": "SQ", "Value": [_dataset_json(item, depth + 1) for item in items]}
    if raw is element and _value_length(element.value) > INLINE_LIMIT:  # set in memory
        return None
    return element.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=0)


def _items_length(items: list[Dataset]) -> int:
    """About the encoded length of sequence items, from their elements' lengths (none decoded),
    counted up to a little past `METADATA_LIMIT`."""
    total = 0
    for item in items:
        for tag in item.keys():
            element = item.get_item(tag, keep_deferred=True)
            if isinstance(element, RawDataElement):
                length = _raw_length(element)
                total += 12 + (METADATA_LIMIT if length is None else length)
            elif element.VR == "SQ":
                total += 12 + _items_length(list(element.value or ()))
            else:
                total += 12 + _value_length(element.value)
            if total > METADATA_LIMIT:
                return total
    return total


def _raw_length(raw: RawDataElement) -> int | None:
    if raw.length != _UNDEFINED_LENGTH:
        return raw.length
    return len(raw.value) if raw.value is not None else None


def _raw_vr(raw: RawDataElement) -> str | None:
    if raw.VR not in (None, "UN"):
        return raw.VR
    try:
        return dictionary_VR(raw.tag)
    except KeyError:
        return None


def _value_length(value: Any) -> int:
    """About the encoded length of a decoded value."""
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    if isinstance(value, list | tuple | MultiValue):
        return sum(_value_length(v) + 1 for v in value)
    return len(str(value))


def _fit(data: dict[str, Any], limit: int) -> None:
    """Leave out the largest top-level elements of `data` while it is larger than `limit`."""
    sizes = {key: _bson_size(value) for key, value in data.items()}
    total = 5 + sum(2 + len(key) + size for key, size in sizes.items())
    for key in sorted(sizes, key=lambda k: sizes[k], reverse=True):
        if total <= limit:
            break
        total -= 2 + len(key) + sizes[key]
        del data[key]


def _bson_size(value: Any) -> int:
    """The length of `value` encoded as BSON (a document or array counts its keys)."""
    if isinstance(value, dict):
        return 5 + sum(2 + len(str(k)) + _bson_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 5 + sum(2 + len(str(i)) + _bson_size(v) for i, v in enumerate(value))
    if isinstance(value, str):
        return 5 + len(value.encode("utf-8", "replace"))
    if isinstance(value, bool) or value is None:
        return 1
    return 8


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
