"""What DICOMweb serves, to whom, and how it is shown: pure rules, no I/O.

Every study route is guarded by the caller's `AccessDecision`: no images, no answer
(`require_images`). What is served depends on it (`may_see`): report-bearing objects (SR,
encapsulated PDF/CDA) only with report access and never on anonymized shares; a share message
series only to its bucket's recipients and the study's own department; on anonymized shares
every object and every JSON answer is rewritten on the way out (`anonymization` gives the key,
`domain.anonymize` rewrites), and objects with burned-in annotations (a name may be in the
pixels) are not served at all.

Also here: the DICOM JSON answers of QIDO-RS and WADO-RS metadata, QIDO-RS matching, the frame
list and rendering parameters a request may ask for, which image a thumbnail shows, the
department an upload is filed under and the STOW-RS answer.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydicom import Dataset

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.study_store.domain.anonymize import (
    AnonymizationKey,
    anonymize_json,
    may_carry_burned_in_text,
)
from studyshare.study_store.domain.dicom_meta import json_set, json_value, tag_key
from studyshare.study_store.domain.exceptions import (
    DepartmentNotYours,
    FrameListTooLong,
    NoAccessToStudy,
    NotRenderable,
    ObjectNotFound,
)

#: the access paths of the study's own side: they see every share message series of the study
OWNING_PATHS = {"department", "owner", "service_desk", "break_the_glass"}
#: the most frame numbers one WADO-RS frames request may list
MAX_FRAME_LIST = 1000


# --- what may be served ------------------------------------------------------------------


def require_images(decision: AccessDecision) -> AccessDecision:
    if not decision.images:
        raise NoAccessToStudy(f"no access to study {decision.study_uid}")
    return decision


def may_see(doc: dict[str, Any], decision: AccessDecision) -> bool:
    """Whether an instance or series document is served under this decision."""
    kind = doc.get("kind", "image")
    if decision.anonymized and may_carry_burned_in_text(doc):
        return False  # the patient's name may be written in the pixels
    if kind == "report":
        return decision.report != "none" and not decision.anonymized
    if kind == "message":
        return (decision.bucket_id is not None and decision.bucket_id == doc.get("bucket_id")) or (
            decision.via in OWNING_PATHS
        )
    return True


def anonymization(
    decision: AccessDecision, secret: str, patient_id: str | None
) -> AnonymizationKey | None:
    """The key an anonymized share's answers are rewritten with (None: shown as stored)."""
    if not decision.anonymized:
        return None
    return AnonymizationKey.for_share(
        secret,
        decision.bucket_id or "",
        decision.anonymous_number or "0",
        patient_id,
    )


# --- DICOM JSON answers ------------------------------------------------------------------


def instance_url(base: str, doc: dict[str, Any]) -> str:
    return (
        f"{base}/dicomweb/studies/{doc['study_uid']}/series/{doc['series_uid']}"
        f"/instances/{doc['_id']}"
    )


def metadata_of(doc: dict[str, Any], base: str, key: AnonymizationKey | None) -> dict[str, Any]:
    """WADO-RS metadata of an instance: its stored attributes, the pixel data as a bulk data
    URI of its frames, and where to retrieve it."""
    data = dict(doc.get("meta") or {})
    if doc.get("has_pixels"):
        frames = ",".join(str(n) for n in range(1, max(doc.get("frames") or 1, 1) + 1))
        data["7FE00010"] = {"vr": "OW", "BulkDataURI": f"{instance_url(base, doc)}/frames/{frames}"}
    json_set(data, "RetrieveURL", "UR", [instance_url(base, doc)])
    return anonymize_json(data, key, message=doc.get("kind") == "message") if key else data


def study_json(
    doc: dict[str, Any],
    base: str,
    key: AnonymizationKey | None,
    series: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The QIDO study answer; with `series` (those the caller may see) the modalities and
    counts are of what the caller can open, so hidden reports do not show through."""
    data = dict(doc.get("meta") or {})
    if series is None:
        modalities = list(doc.get("modalities") or [])
        series_count, instance_count = doc.get("series_count", 0), doc.get("instance_count", 0)
    else:
        modalities = sorted({s.get("modality") or "OT" for s in series})
        series_count = len(series)
        instance_count = sum(s.get("instance_count", 0) for s in series)
    json_set(data, "ModalitiesInStudy", "CS", modalities)
    json_set(data, "NumberOfStudyRelatedSeries", "IS", [series_count])
    json_set(data, "NumberOfStudyRelatedInstances", "IS", [instance_count])
    json_set(data, "RetrieveURL", "UR", [f"{base}/dicomweb/studies/{doc['_id']}"])
    return anonymize_json(data, key) if key else data


def series_json(
    study: dict[str, Any], series: dict[str, Any], base: str, key: AnonymizationKey | None
) -> dict[str, Any]:
    """The QIDO series answer: the study's attributes and the series' own."""
    data = {**(study.get("meta") or {}), **(series.get("meta") or {})}
    json_set(data, "NumberOfSeriesRelatedInstances", "IS", [series.get("instance_count", 0)])
    json_set(
        data,
        "RetrieveURL",
        "UR",
        [f"{base}/dicomweb/studies/{study['_id']}/series/{series['_id']}"],
    )
    return anonymize_json(data, key) if key else data


#: the attributes of a QIDO instance answer
INSTANCE_ATTRIBUTES = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "Modality",
    "PatientName",
    "PatientID",
)
_INSTANCE_KEYS = {tag_key(k) for k in INSTANCE_ATTRIBUTES}


def instance_json(doc: dict[str, Any], base: str, key: AnonymizationKey | None) -> dict[str, Any]:
    """The QIDO instance answer."""
    data = {k: v for k, v in (doc.get("meta") or {}).items() if k in _INSTANCE_KEYS}
    json_set(data, "RetrieveURL", "UR", [instance_url(base, doc)])
    return anonymize_json(data, key) if key else data


# --- QIDO-RS matching --------------------------------------------------------------------


def date_query(value: str) -> dict[str, str] | str:
    """DICOM date matching: single date or range (`a-b`, `a-`, `-b`)."""
    value = value.replace(".", "")
    if "-" not in value:
        return value
    low, _, high = value.partition("-")
    query = {}
    if low:
        query["$gte"] = low
    if high:
        query["$lte"] = high
    return query


def date_matches(value: str | None, data: dict[str, Any]) -> bool:
    """A StudyDate query against the date an answer shows (an anonymized share's shifted one)."""
    if not value:
        return True
    shown = str(json_value(data, "StudyDate") or "")
    query = date_query(value)
    if isinstance(query, str):
        return shown == query
    return bool(shown) and query.get("$gte", "") <= shown <= query.get("$lte", "99999999")


def matches(pattern: str | None, value: Any) -> bool:
    if not pattern:
        return True
    text = str(value or "")
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(text.lower(), pattern.lower())
    return text.lower() == pattern.lower()


@dataclass(frozen=True)
class VisibleStudies:
    """The studies a caller may open now, by how they are shown: in the clear, or anonymized
    (a pseudonym, shifted dates, no accession number). A search matches the patient of the
    clear ones on the study index, and everything it shows of the anonymized ones on their
    answers."""

    clear: frozenset[str] = frozenset()
    anonymized: frozenset[str] = frozenset()
    every: bool = False
    """Every study, in the clear (the service desk): the search is not restricted at all."""

    @classmethod
    def of(cls, decisions: Iterable[AccessDecision], certain: Iterable[str] = ()) -> VisibleStudies:
        """The studies of the `decisions` that open their images, and those `certain` to open
        (in the clear)."""
        opened = [d for d in decisions if d.images]
        return cls(
            frozenset(certain).union(d.study_uid for d in opened if not d.anonymized),
            frozenset(d.study_uid for d in opened if d.anonymized),
        )

    def __contains__(self, study_uid: object) -> bool:
        return self.every or study_uid in self.clear or study_uid in self.anonymized

    def __len__(self) -> int:
        """How many studies (not to be asked of `every`)."""
        if self.every:
            raise TypeError("every study: no count")
        return len(self.clear) + len(self.anonymized)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.clear | self.anonymized))

    def among(self, study_uids: Iterable[str]) -> VisibleStudies:
        wanted = frozenset(study_uids)
        if self.every:
            return VisibleStudies(wanted)
        return VisibleStudies(self.clear & wanted, self.anonymized & wanted)


def prefix_pattern(pattern: str | None) -> str | None:
    """A regular expression that every value `matches(pattern, value)` accepts starts with
    (case aside); None when an empty value matches too (a missing attribute would)."""
    if not pattern or matches(pattern, ""):
        return None
    wildcards = {"*": ".*", "?": "."}
    return "^" + "".join(wildcards.get(c) or re.escape(c) for c in pattern)


@dataclass(frozen=True)
class StudyFilters:
    """A QIDO-RS study search's matching keys."""

    patient_id: str | None = None
    patient_name: str | None = None
    study_date: str | None = None
    modalities: str | None = None
    accession_number: str | None = None

    @property
    def wanted_modalities(self) -> set[str]:
        return {m.strip() for m in (self.modalities or "").split(",") if m.strip()}

    def shown_match(
        self,
        data: dict[str, Any],
        series: Iterable[dict[str, Any]],
        key: AnonymizationKey | None,
    ) -> bool:
        """Whether a study answer matches as the caller sees it (the pseudonym, shifted dates
        and no accession number on anonymized shares, no hidden report series)."""
        if key is not None and (self.accession_number or not date_matches(self.study_date, data)):
            return False
        if not matches(self.patient_id, json_value(data, "PatientID")):
            return False
        if not matches(self.patient_name, json_value(data, "PatientName")):
            return False
        wanted = self.wanted_modalities
        return not wanted or bool(wanted & {x.get("modality") for x in series})


# --- frames and renderings ---------------------------------------------------------------


def frame_numbers(text: str) -> list[int]:
    """The distinct frame numbers asked for, in the order first asked (each served once)."""
    if text.count(",") >= MAX_FRAME_LIST:
        raise FrameListTooLong(f"ask for at most {MAX_FRAME_LIST} frames per request")
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise ObjectNotFound("frame numbers are positive integers") from None
    if not numbers or any(n < 1 for n in numbers):
        raise ObjectNotFound("frame numbers are positive integers")
    return list(dict.fromkeys(numbers))


RenderedMedia = Literal["image/png", "image/jpeg"]


def rendered_media(accept: str) -> RenderedMedia:
    """PNG when the caller's Accept names it, else JPEG."""
    return "image/png" if "image/png" in accept else "image/jpeg"


def parse_window(window: str | None) -> tuple[float, float] | None:
    """`center,width[,function]` (the pattern of the query checks the form)."""
    if not window:
        return None
    center, width = (float(v) for v in window.split(",")[:2])
    return center, max(width, 1.0)


def parse_viewport(viewport: str | None) -> tuple[int, int]:
    """`width,height`, each kept within 1..1024 (the pattern of the query checks the form)."""
    if not viewport:
        return (128, 128)
    width, height = (min(max(int(v), 1), 1024) for v in viewport.split(",")[:2])
    return width, height


def thumbnail_of(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The image a thumbnail of a selection shows, and its frame (1-based): the middle frame
    of the middle image of the selection's first image series."""
    images = [d for d in docs if d.get("has_pixels") and d.get("kind") == "image"]
    if not images:
        raise NotRenderable("nothing in this selection has pixel data")
    first_series = images[0]["series_uid"]
    images = [d for d in images if d["series_uid"] == first_series]
    doc = images[len(images) // 2]
    return doc, ((doc.get("frames") or 1) + 1) // 2


# --- STOW-RS -----------------------------------------------------------------------------


def upload_department(principal: AccessClaims, department_id: str | None) -> str | None:
    """The department an upload is filed under: the one asked for, which must be the
    uploader's own, else the uploader's first."""
    if department_id is not None and department_id not in principal.department_ids:
        raise DepartmentNotYours(f"you are not a member of department {department_id}")
    return department_id or (principal.department_ids[0] if principal.department_ids else None)


def is_dicom_part(headers: dict[str, str]) -> bool:
    """Whether a STOW-RS part is a DICOM object (a part without a Content-Type is taken as
    one); other parts are answered as failed, not stored."""
    media = headers.get("content-type", "application/dicom").split(";")[0].strip().lower()
    return media == "application/dicom"


class StoreOutcome(Protocol):
    """What happened to one received object (`service_layer.ingest.Outcome`)."""

    @property
    def sop_class_uid(self) -> str | None: ...
    @property
    def sop_instance_uid(self) -> str | None: ...
    @property
    def study_uid(self) -> str | None: ...
    @property
    def series_uid(self) -> str | None: ...
    @property
    def failure(self) -> int | None: ...
    @property
    def ok(self) -> bool: ...


def stow_answer(
    outcomes: Iterable[StoreOutcome], base: str, study_uid: str | None
) -> tuple[dict[str, Any], int]:
    """The STOW-RS answer (DICOM JSON) and its status: 200 every instance stored, 202 some
    failed, 409 none stored."""
    stored, failed = Dataset(), []
    referenced = []
    for outcome in outcomes:
        item = Dataset()
        if outcome.sop_class_uid:
            item.ReferencedSOPClassUID = outcome.sop_class_uid
        if outcome.sop_instance_uid:
            item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
        if outcome.ok:
            item.RetrieveURL = (
                f"{base}/dicomweb/studies/{outcome.study_uid}/series/{outcome.series_uid}"
                f"/instances/{outcome.sop_instance_uid}"
            )
            referenced.append(item)
        else:
            item.FailureReason = outcome.failure
            failed.append(item)
    if study_uid:
        stored.RetrieveURL = f"{base}/dicomweb/studies/{study_uid}"
    if referenced:
        stored.ReferencedSOPSequence = referenced
    if failed:
        stored.FailedSOPSequence = failed
    return stored.to_json_dict(), 200 if not failed else (202 if referenced else 409)
