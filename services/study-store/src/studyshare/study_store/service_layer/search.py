"""Search (QIDO-RS): the studies, series and instances a caller may open, as DICOM JSON.

Searches only the studies the access model lets the caller open (`visible_study_uids`), asks
its decision for each, and matches what the caller sees (`domain.serving.StudyFilters`): the
study index matches what it can first (`index_query`), so a search for one patient does not
open every study of a department's archive. The routes register the studies found in the
study logging.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.study_store.adapters.instances import Placing
from studyshare.study_store.domain.anonymize import AnonymizationKey
from studyshare.study_store.domain.exceptions import AccessDecisionsUnavailable, ObjectNotFound
from studyshare.study_store.domain.serving import (
    StudyFilters,
    VisibleStudies,
    anonymization,
    date_query,
    instance_json,
    prefix_pattern,
    require_images,
    series_json,
    study_json,
)
from studyshare.study_store.service_layer.retrieval import (
    DicomStores,
    shown_series,
    study_key,
    visible_instances,
)


class AccessModel(Protocol):
    """What a search asks of the access model (`adapters.access_model.AccessModel`)."""

    @property
    def fresh(self) -> bool: ...

    async def visible_studies(self, principal: AccessClaims) -> VisibleStudies: ...

    async def decide(self, principal: AccessClaims, study_uid: str) -> AccessDecision: ...


async def visible_study_uids(model: AccessModel, principal: AccessClaims) -> VisibleStudies:
    """The studies the caller may open, from the access model (503 while it may not decide:
    an empty answer would look like revoked access)."""
    if not model.fresh:
        raise AccessDecisionsUnavailable("access decisions are temporarily unavailable")
    return await model.visible_studies(principal)


def index_query(filters: StudyFilters, anonymized: bool) -> dict[str, Any] | None:
    """What the study index can match itself, of studies shown in the clear or anonymized
    (what it cannot match is matched on the answers); None: no such study can match."""
    query: dict[str, Any] = {}
    wanted_modalities = filters.wanted_modalities
    if wanted_modalities:
        query["modalities"] = {"$in": sorted(wanted_modalities)}
    if anonymized:  # their dates are shifted, their accession numbers not shown
        return None if filters.accession_number else query
    if filters.study_date:
        query["study_date"] = date_query(filters.study_date)
    if filters.accession_number:
        query["accession_number"] = filters.accession_number
    patient = {"patient_id": filters.patient_id, "patient_name": filters.patient_name}
    for field, pattern in patient.items():
        if regex := prefix_pattern(pattern):
            query[field] = {"$regex": regex, "$options": "i"}
    return query


def _matching(
    stores: DicomStores,
    visible: VisibleStudies,
    filters: StudyFilters,
    keys: dict[str, AnonymizationKey | None],
) -> AsyncIterator[dict[str, Any]]:
    """The index's documents of the visible studies that may match, newest first as the
    caller sees them: an anonymized study by its shifted date and remapped UID (by its real
    date, its neighbours would give that date away). `keys`: of the anonymized ones."""
    clear = index_query(filters, anonymized=False) or {}
    if visible.every:  # every study, shown in the clear
        return stores.index.search_studies(clear)
    searches: list[tuple[frozenset[str], dict[str, Any], Placing | None]] = [
        (visible.clear, clear, None)
    ]
    if (anonymized := index_query(filters, anonymized=True)) is not None:
        searches.append((visible.anonymized, anonymized, partial(shown_place, keys)))
    return stores.index.search_among(searches)


def shown_place(
    keys: dict[str, AnonymizationKey | None], doc: dict[str, Any]
) -> tuple[str, str, str]:
    """Where a study goes in a search's order: by the date (a DA, as the index keeps those
    shown in the clear) and UID its key shows."""
    uid, key = doc["_id"], keys.get(doc["_id"])
    if key is None:
        return doc.get("study_date") or "", uid, uid
    return (*key.place(doc.get("study_date") or "", uid), uid)


async def search_studies(
    stores: DicomStores,
    decide: Callable[[AccessClaims, str], Awaitable[AccessDecision]],
    principal: AccessClaims,
    visible: VisibleStudies,
    filters: StudyFilters,
    base: str,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], list[AccessDecision]]:
    """The matching studies among `visible` (page `offset`, at most `limit`), and the
    decisions they were shown under."""
    results: list[dict[str, Any]] = []
    found: list[AccessDecision] = []
    skipped = 0
    secret = stores.settings.anonymization_secret
    decided = {uid: await decide(principal, uid) for uid in visible.anonymized}
    keys = {uid: anonymization(d, secret, None) for uid, d in decided.items()}
    async for doc in _matching(stores, visible, filters, keys):
        decision = decided.get(doc["_id"]) or await decide(principal, doc["_id"])
        if not decision.images:
            continue
        key = anonymization(decision, secret, doc.get("patient_id"))
        series = await shown_series(stores, decision, doc["_id"])
        data = study_json(doc, base, key, series)
        if not filters.shown_match(data, series, key):
            continue
        if skipped < offset:
            skipped += 1
            continue
        results.append(data)
        found.append(decision)
        if len(results) >= limit:
            break
    return results, found


async def search_series(
    stores: DicomStores,
    decision: AccessDecision,
    study_uid: str,
    base: str,
    modality: str | None,
    series_uid: str | None,
) -> list[dict[str, Any]]:
    """The series of a study the caller may see."""
    require_images(decision)
    study = await stores.index.study(study_uid)
    if study is None:
        raise ObjectNotFound(f"study {study_uid} is not in the store")
    key = anonymization(decision, stores.settings.anonymization_secret, study.get("patient_id"))
    out = []
    for series in await shown_series(stores, decision, study_uid):
        if modality and series.get("modality") != modality:
            continue
        if series_uid and series["_id"] != series_uid:
            continue
        out.append(series_json(study, series, base, key))
    return out


async def search_instances(
    stores: DicomStores,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None,
    base: str,
) -> list[dict[str, Any]]:
    """The instances of a study or series the caller may see."""
    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid)
    key = await study_key(stores, decision, study_uid)
    return [instance_json(doc, base, key) for doc in docs]
