"""Anonymized shares: the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile,
applied as an allow-list, on the way out (the objects on disk stay as received).

Per share (bucket) one key, derived from the store's secret and the bucket id:
- every attribute of the profile's table (`confidentiality_profile.ANNEX_E`) is removed, or kept
  empty where the profile says Z; private attributes are removed;
- an attribute outside that table survives only when it is on `KEPT` (what describes the image:
  pixel module, geometry, LUTs, acquisition technique): any other is removed;
- the patient becomes "Anonymous^<number>" with a patient ID pseudonym of the bucket;
- UIDs the profile says U are remapped to `2.25.<HMAC of the bucket key and the UID>`
  (`studyshare.contracts.anonymized`, which the share service uses too), and so
  are the UIDs in the URLs the store writes into its answers (RetrieveURL, BulkDataURI);
- dates of `SHIFTED_DATES` are moved by the bucket's offset (the profile's Retain Longitudinal
  Temporal Information with Modified Dates option; the times of day stay);
so two anonymized shares of one patient share no pseudonym, UID or date.

Objects that may carry burned-in text (`may_carry_burned_in_text`) are never served on an
anonymized share: nothing here can clean pixels.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.sequence import Sequence

from studyshare.contracts.anonymized import bucket_key, keyed, remap_uid, shifted
from studyshare.study_store.domain.confidentiality_profile import (
    ANNEX_E,
    KEPT_EMPTY,
    REMAPPED_UIDS,
)

ANONYMOUS_FAMILY_NAME = "Anonymous"
#: (LO, at most 64 characters) the codes below say the same
DEIDENTIFICATION_METHOD = "PS3.15 E.1 Basic Profile, Modified Dates Option (StudyShare)"
#: (code value, meaning) of the profile and option applied (CID 7050, scheme DCM)
DEIDENTIFICATION_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
#: modalities whose images often carry text in their pixels (the issue's list)
BURNED_IN_MODALITIES = frozenset({"US", "SC", "OT", "DOC", "XC", "ES", "GM", "SM"})
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


def _tags(*keywords: str) -> frozenset[int]:
    found = {tag_for_keyword(k) for k in keywords}
    missing = [k for k in keywords if tag_for_keyword(k) is None]
    if missing:
        raise ValueError(f"unknown DICOM keywords: {missing}")
    return frozenset(t for t in found if t is not None)


#: The allow-list: attributes outside the Annex E table that an anonymized share keeps as they
#: are (sequences among them are walked with the same rules). No free text: what a person may
#: type (descriptions, comments, the explanations of a window or a LUT) is left out; the short
#: strings kept (a convolution kernel, a sequence name) are settings the equipment writes.
KEPT = _tags(
    # SOP common, general series / image / equipment (what it is, not whose)
    "SpecificCharacterSet",
    "SOPClassUID",
    "ImageType",
    "Modality",
    "SeriesNumber",
    "InstanceNumber",
    "AcquisitionNumber",
    "ConversionType",
    "BurnedInAnnotation",
    "RecognizableVisualFeatures",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    "PatientOrientation",
    "PatientPosition",
    "Laterality",
    "ImageLaterality",
    "ViewPosition",
    "BodyPartExamined",
    "PresentationIntentType",
    "QualityControlImage",
    # image pixel, palette, multi-frame
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelAspectRatio",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "NumberOfFrames",
    "FrameIncrementPointer",
    "FrameTime",
    "FrameTimeVector",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
    # geometry
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
    "PositionReferenceIndicator",
    # modality and VOI LUT, presentation
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "LUTDescriptor",
    "ModalityLUTType",
    "LUTData",
    "PresentationLUTShape",
    # acquisition technique (CT, MR, X-ray)
    "ScanOptions",
    "KVP",
    "DataCollectionDiameter",
    "ReconstructionDiameter",
    "DistanceSourceToDetector",
    "DistanceSourceToPatient",
    "GantryDetectorTilt",
    "TableHeight",
    "RotationDirection",
    "ExposureTime",
    "XRayTubeCurrent",
    "Exposure",
    "FilterType",
    "GeneratorPower",
    "FocalSpots",
    "ConvolutionKernel",
    "RevolutionTime",
    "SingleCollimationWidth",
    "TotalCollimationWidth",
    "SpiralPitchFactor",
    "CTDIvol",
    "ScanningSequence",
    "SequenceVariant",
    "MRAcquisitionType",
    "SequenceName",
    "AngioFlag",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "NumberOfAverages",
    "ImagingFrequency",
    "ImagedNucleus",
    "EchoNumbers",
    "MagneticFieldStrength",
    "EchoTrainLength",
    "FlipAngle",
    "AcquisitionMatrix",
    "InPlanePhaseEncodingDirection",
    "PixelBandwidth",
    # enhanced multi-frame functional groups (their items are walked with the same rules)
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "PixelMeasuresSequence",
    "PlanePositionSequence",
    "PlaneOrientationSequence",
    "FrameContentSequence",
    "FrameVOILUTSequence",
    "PixelValueTransformationSequence",
    "DimensionIndexValues",
    "InStackPositionNumber",
    "TemporalPositionIndex",
    "StackID",
    # DICOM JSON answers of the store (QIDO-RS attributes; URLs are remapped)
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances",
    "RetrieveURL",
    # what the store adds on anonymized shares
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified",
    "CodeValue",
    "CodingSchemeDesignator",
    "CodeMeaning",
)
#: a share message (a text SR the sender wrote for the recipients) keeps its text
MESSAGE_CONTENT = _tags(
    "ContentSequence",
    "ValueType",
    "RelationshipType",
    "ContinuityOfContent",
    "TextValue",
    "ConceptNameCodeSequence",
    "CompletionFlag",
    "VerificationFlag",
)
#: dates moved by the bucket's offset (all other dates of the profile are removed or emptied)
SHIFTED_DATES = _tags(
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "AcquisitionDateTime",
)
#: times of day kept beside their shifted dates (the Modified Dates option)
KEPT_TIMES = _tags("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime")
#: Z attributes given a dummy value instead (Z allows one): a DICOMDIR's STUDY record needs one
DUMMIES = {tag_for_keyword("StudyID"): "ANON"}
PATIENT_NAME = tag_for_keyword("PatientName")
PATIENT_ID = tag_for_keyword("PatientID")
PIXEL_DATA = tag_for_keyword("PixelData")
RETRIEVE_URL = tag_for_keyword("RetrieveURL")
assert PATIENT_NAME is not None and PATIENT_ID is not None and RETRIEVE_URL is not None
assert not KEPT & frozenset(ANNEX_E), "the allow-list keeps no attribute of the profile"

_URL_UID = re.compile(r"/(studies|series|instances)/([0-9]+(?:\.[0-9]+)+)")
#: a DA or DT range: two dates (a DT's own offset, `-0500`, has four digits, not eight)
_RANGE = re.compile(r"^([0-9]{8}[^-]*)-([0-9]{8}.*)$")


@dataclass(frozen=True)
class AnonymizationKey:
    """What replaces the patient on one anonymized share (one bucket)."""

    number: str
    key: bytes
    patient_pseudonym: str

    @classmethod
    def for_share(
        cls, secret: str, bucket_id: str, number: str, patient_id: str | None
    ) -> AnonymizationKey:
        key = bucket_key(secret, bucket_id)
        pseudonym = keyed(key, "patient", patient_id or "").hex()[:16].upper()
        return cls(number, key, f"ANON-{pseudonym}")

    @property
    def patient_name(self) -> str:
        return f"{ANONYMOUS_FAMILY_NAME}^{self.number}"

    def uid(self, uid: str) -> str:
        return remap_uid(self.key, uid)

    def url(self, url: str) -> str:
        """A URL of the store with its study, series and instance UIDs remapped."""
        return _URL_UID.sub(lambda m: f"/{m.group(1)}/{self.uid(m.group(2))}", url)

    def date(self, value: str) -> str | None:
        """A DA (or the date of a DT) moved back by the share's offset, both ends of a range
        (`from-to`: the second end once stayed as it was); None when it is no full date."""
        text = str(value).strip()
        if ends := _RANGE.match(text):
            first, second = self._one_date(ends[1]), self._one_date(ends[2])
            return None if first is None or second is None else f"{first}-{second}"
        return self._one_date(text)

    def _one_date(self, text: str) -> str | None:
        try:
            day = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None
        return shifted(self.key, day).strftime("%Y%m%d") + text[8:]

    def iso_date(self, day: date | None) -> date | None:
        return None if day is None else shifted(self.key, day)

    def place(self, study_date: str, uid: str) -> tuple[str, str]:
        """Where a study goes in a list ordered newest first: by the date and UID it is shown
        with. `study_date` as it is kept (a DA `YYYYMMDD` in the index, ISO in the access
        read model), shifted in the same form, so that it sorts among the dates kept in the
        clear; "" when it is no date."""
        if "-" not in study_date[:8]:
            return self.date(study_date) or "", self.uid(uid)
        try:
            shown = self.iso_date(date.fromisoformat(study_date))
        except ValueError:
            shown = None
        return (shown.isoformat() if shown else ""), self.uid(uid)


def pseudonym_for(patient_id: str, secret: str) -> str:
    """Kept for callers without a share: a keyed pseudonym of the patient ID."""
    digest = hmac.new(secret.encode(), patient_id.encode(), hashlib.sha256).hexdigest()
    return f"ANON-{digest[:16].upper()}"


def anonymous_number_for(*parts: str) -> str:
    """A stable 8-digit number for contexts without an access decision (worker forwards)."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return str(int.from_bytes(digest[:8], "big") % 90_000_000 + 10_000_000)


def may_carry_burned_in_text(doc: dict[str, Any]) -> bool:
    """Whether an instance (or series) document may show text in its pixels: a modality that
    often does, a Secondary Capture, or an image that does not say BurnedInAnnotation NO."""
    meta = doc.get("meta") or {}
    modality = doc.get("modality") or _json_first(meta, "00080060")
    if str(modality or "").upper() in BURNED_IN_MODALITIES:
        return True
    sop_class = str(doc.get("sop_class_uid") or _json_first(meta, "00080016") or "")
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return True
    if doc.get("burned_in"):
        return True
    if doc.get("has_pixels"):
        return str(_json_first(meta, "00280301") or "").strip().upper() != "NO"
    return False


def _json_first(data: dict[str, Any], tag: str) -> Any:
    values = (data.get(tag) or {}).get("Value") or [None]
    return values[0]


# --- the rules, once for both forms ----------------------------------------------------------

KEEP, DROP, EMPTY, DUMMY, NAME, PID, UIDS, DATE, URL = (
    "keep drop empty dummy name pid uids date url".split()
)


def action(tag: int, vr: str, message: bool = False) -> str:
    """What an anonymized share does with one attribute."""
    if tag == PATIENT_NAME:
        return NAME
    if tag == PATIENT_ID:
        return PID
    if tag & 0x10000 or tag >> 16 in (0x0000, 0x0002):
        return DROP  # private attributes, group lengths, command and file meta elements
    if tag in REMAPPED_UIDS and vr == "UI":
        return UIDS
    if tag in SHIFTED_DATES:
        return DATE
    if tag in KEPT_TIMES:
        return KEEP
    if tag == RETRIEVE_URL:
        return URL
    if message and tag in MESSAGE_CONTENT:
        return KEEP  # the text the sender wrote for the recipients (its D content sequence)
    if tag in DUMMIES:
        return DUMMY
    if tag in ANNEX_E:
        return EMPTY if tag in KEPT_EMPTY else DROP
    if tag in KEPT:
        return KEEP
    return DROP


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def anonymize_dataset(ds: Dataset, key: AnonymizationKey, *, message: bool = False) -> Dataset:
    """Rewrite `ds` in place (pass a copy) and return it, file meta included."""
    _rewrite_dataset(ds, key, message)
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        if "MediaStorageSOPInstanceUID" in file_meta:
            file_meta.MediaStorageSOPInstanceUID = key.uid(file_meta.MediaStorageSOPInstanceUID)
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle"):
            if keyword in file_meta:
                del file_meta[keyword]
        for keyword in ("ReceivingApplicationEntityTitle", "PrivateInformation"):
            if keyword in file_meta:
                del file_meta[keyword]
    _mark(ds, key)
    return ds


def _rewrite_dataset(ds: Dataset, key: AnonymizationKey, message: bool) -> None:
    for tag in list(ds.keys()):
        element = ds[tag]
        what = action(int(tag), element.VR, message)
        if what == DROP:
            del ds[tag]
        elif what == EMPTY:
            element.value = Sequence() if element.VR == "SQ" else None
        elif what == DUMMY:
            element.value = DUMMIES[int(tag)]
        elif what == NAME:
            element.value = key.patient_name
        elif what == PID:
            element.value = key.patient_pseudonym
        elif what == UIDS:
            element.value = [key.uid(str(v)) for v in _values(element.value)] or None
            if isinstance(element.value, list) and len(element.value) == 1:
                element.value = element.value[0]
        elif what == DATE:
            shifted = [key.date(str(v)) for v in _values(element.value)]
            if any(v is None for v in shifted):
                del ds[tag]
            else:
                element.value = shifted[0] if len(shifted) == 1 else shifted
        elif what == URL:
            element.value = [key.url(str(v)) for v in _values(element.value)]
        elif element.VR == "SQ":
            for item in element.value or ():
                _rewrite_dataset(item, key, message)


def _mark(ds: Dataset, key: AnonymizationKey) -> None:
    ds.PatientName = key.patient_name
    ds.PatientID = key.patient_pseudonym
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    codes = []
    for value, meaning in DEIDENTIFICATION_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


def _marks_json(key: AnonymizationKey) -> dict[str, Any]:
    ds = Dataset()
    _mark(ds, key)
    return ds.to_json_dict()


def anonymize_json(
    data: dict[str, Any], key: AnonymizationKey, *, message: bool = False
) -> dict[str, Any]:
    """A rewritten copy of a DICOM JSON object (nested sequences included)."""
    out = _rewrite_json(data, key, message)
    out.update(_marks_json(key))
    return dict(sorted(out.items()))


def _rewrite_json(data: dict[str, Any], key: AnonymizationKey, message: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag_text, element in data.items():
        try:
            tag = int(tag_text, 16)
        except ValueError:
            continue
        if not isinstance(element, dict):
            continue
        vr = str(element.get("vr", ""))
        what = action(tag, vr, message)
        if what == DROP:
            continue
        if what == EMPTY:
            out[tag_text] = {"vr": vr}
        elif what == DUMMY:
            out[tag_text] = {"vr": vr, "Value": [DUMMIES[tag]]}
        elif what == NAME:
            out[tag_text] = {"vr": "PN", "Value": [{"Alphabetic": key.patient_name}]}
        elif what == PID:
            out[tag_text] = {"vr": "LO", "Value": [key.patient_pseudonym]}
        elif what == UIDS:
            out[tag_text] = _mapped(element, vr, lambda v: key.uid(str(v)))
        elif what == DATE:
            shifted = [key.date(str(v)) for v in element.get("Value") or ()]
            if shifted and all(v is not None for v in shifted):
                out[tag_text] = {"vr": vr, "Value": shifted}
        elif what == URL:
            out[tag_text] = _mapped(element, vr, lambda v: key.url(str(v)))
        elif vr == "SQ":
            items = [_rewrite_json(i, key, message) for i in element.get("Value") or ()]
            out[tag_text] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        elif "BulkDataURI" in element:
            out[tag_text] = {"vr": vr, "BulkDataURI": key.url(str(element["BulkDataURI"]))}
        else:
            out[tag_text] = element
    return out


def _mapped(element: dict[str, Any], vr: str, change: Callable[[Any], str]) -> dict[str, Any]:
    values = [change(v) for v in element.get("Value") or () if v is not None]
    return {"vr": vr, "Value": values} if values else {"vr": vr}
