"""Anonymized shares: what the recipient sees instead of the patient.

The first name becomes a number, the last name "Anonymous" (DICOM PN "Anonymous^<number>"),
the patient ID a stable pseudonym, and the other identifying patient attributes are removed.
Applied on the way out to every DICOM object and every DICOM JSON answer; the originals on disk
stay untouched. Study/series/instance UIDs are kept: they address the objects the recipient was
given and carry no patient identity by themselves.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.tag import Tag

ANONYMOUS_FAMILY_NAME = "Anonymous"

# Removed everywhere (any nesting depth): names, identifiers, dates and contacts of the patient.
REMOVED_KEYWORDS = (
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientBirthName",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientTelecomInformation",
    "CountryOfResidence",
    "RegionOfResidence",
    "MedicalRecordLocator",
    "MilitaryRank",
    "BranchOfService",
    "PatientReligiousPreference",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientComments",
    "PatientInsurancePlanCodeSequence",
    "ReferencedPatientSequence",
    "PersonName",
)
REMOVED_TAGS = frozenset(int(Tag(k)) for k in REMOVED_KEYWORDS)
REMOVED_KEYS = frozenset(f"{t:08X}" for t in REMOVED_TAGS)
PATIENT_NAME = int(Tag("PatientName"))
PATIENT_ID = int(Tag("PatientID"))


@dataclass(frozen=True)
class AnonymizationKey:
    """What replaces the patient on one anonymized share."""

    number: str
    patient_pseudonym: str

    @property
    def patient_name(self) -> str:
        return f"{ANONYMOUS_FAMILY_NAME}^{self.number}"


def pseudonym_for(patient_id: str, secret: str) -> str:
    """A stable patient ID pseudonym: the same patient always maps to the same value."""
    digest = hmac.new(secret.encode(), patient_id.encode(), hashlib.sha256).hexdigest()
    return f"ANON-{digest[:16].upper()}"


def anonymous_number_for(*parts: str) -> str:
    """A stable 8-digit number for contexts without an access decision (worker forwards)."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return str(int.from_bytes(digest[:8], "big") % 90_000_000 + 10_000_000)


def anonymize_dataset(ds: Dataset, key: AnonymizationKey) -> Dataset:
    """Rewrite `ds` in place (pass a copy) and return it."""

    def visit(dataset: Dataset, element: DataElement) -> None:
        tag = int(element.tag)
        if tag in REMOVED_TAGS:
            del dataset[element.tag]
        elif tag == PATIENT_NAME:
            element.value = key.patient_name
        elif tag == PATIENT_ID:
            element.value = key.patient_pseudonym

    ds.walk(visit)
    ds.PatientName = key.patient_name
    ds.PatientID = key.patient_pseudonym
    ds.PatientIdentityRemoved = "NO"
    ds.DeidentificationMethod = "StudyShare anonymized share"
    return ds


def anonymize_json(data: dict[str, Any], key: AnonymizationKey) -> dict[str, Any]:
    """A rewritten copy of a DICOM JSON object (nested sequences included)."""
    out: dict[str, Any] = {}
    for tag, element in data.items():
        if tag in REMOVED_KEYS:
            continue
        if tag == f"{PATIENT_NAME:08X}":
            out[tag] = {"vr": "PN", "Value": [{"Alphabetic": key.patient_name}]}
        elif tag == f"{PATIENT_ID:08X}":
            out[tag] = {"vr": "LO", "Value": [key.patient_pseudonym]}
        elif isinstance(element, dict) and element.get("vr") == "SQ" and element.get("Value"):
            out[tag] = {
                "vr": "SQ",
                "Value": [anonymize_json(item, key) for item in element["Value"]],
            }
        else:
            out[tag] = element
    return out
