"""Retrieval (WADO-RS and the study's downloads): find the instances a decision lets the
caller see, apply the serving rules (`domain.serving`), read and stream them.

`DicomStores` holds what the DICOM half of the store works with (`open_stores` makes it once
per process). Each function here decides and reads; registering the access in the study logging
is the caller's (the routes do it between deciding and answering, as before).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.access_policy.decision import AccessDecision
from studyshare.plumbing.errors import RuleViolation
from studyshare.study_store.adapters import multipart, pixels
from studyshare.study_store.adapters.blobstore import BlobStore, blob_store
from studyshare.study_store.adapters.dicom_files import Frame
from studyshare.study_store.adapters.instance_cache import StudyInstances
from studyshare.study_store.adapters.instances import InstanceIndex
from studyshare.study_store.adapters.multipart import MultipartAnswer
from studyshare.study_store.domain.anonymize import AnonymizationKey
from studyshare.study_store.domain.exceptions import NotRenderable, ObjectNotFound
from studyshare.study_store.domain.serving import (
    RenderedMedia,
    anonymization,
    may_see,
    metadata_of,
    require_images,
    thumbnail_of,
)
from studyshare.study_store.service_layer.ingest import Ingest
from studyshare.study_store.settings import StudyStoreSettings


@dataclass
class DicomStores:
    db: AsyncDatabase
    settings: StudyStoreSettings
    blobs: BlobStore
    index: InstanceIndex
    ingest: Ingest
    instances: StudyInstances


async def open_stores(
    db: AsyncDatabase, settings: StudyStoreSettings, study_version: Callable[[str], Hashable]
) -> DicomStores:
    """The DICOM stores, their indexes made. `study_version(uid)` changes whenever the
    study's instances may have (the instance cache is kept while it stays the same)."""
    blobs = blob_store(settings, db)
    index = InstanceIndex(db)
    instances = StudyInstances(index, study_version, ttl_s=settings.instance_cache_ttl_s)
    ingest = Ingest(db, blobs, on_indexed=instances.forget)
    stores = DicomStores(db, settings, blobs, index, ingest, instances)
    await stores.ingest.ensure_indexes()
    await stores.db["events"].create_index(
        [("aggregate_type", 1), ("payload.study_uid", 1)], name="by_study"
    )
    return stores


# --- finding what may be served ----------------------------------------------------------


async def visible_instances(
    stores: DicomStores,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[dict[str, Any]]:
    """The instance documents the decision lets the caller see (shared: do not change them)."""
    docs = await stores.instances.instances_of(study_uid, series_uid, sop_uid)
    docs = [d for d in docs if may_see(d, decision)]
    if not docs:
        raise ObjectNotFound("no such object in this study")
    return docs


async def shown_series(
    stores: DicomStores, decision: AccessDecision, study_uid: str
) -> list[dict[str, Any]]:
    """The study's series the caller may see, each with the number of its instances they
    may (shared: do not change them). On an anonymized share whether an image may carry
    burned-in text is told per instance: a series of hidden images is left out, and no
    count lets a hidden object show through."""
    series = [s for s in await stores.index.series_of(study_uid) if may_see(s, decision)]
    if not decision.anonymized:
        return series
    shown = Counter(
        d["series_uid"]
        for d in await stores.instances.instances_of(study_uid)
        if may_see(d, decision)
    )
    return [{**s, "instance_count": shown[s["_id"]]} for s in series if shown[s["_id"]]]


async def study_key(
    stores: DicomStores, decision: AccessDecision, study_uid: str
) -> AnonymizationKey | None:
    """The anonymization key of the study's answers under this decision (None: as stored)."""
    if not decision.anonymized:
        return None
    study = await stores.index.study(study_uid)
    return anonymization(
        decision, stores.settings.anonymization_secret, (study or {}).get("patient_id")
    )


@dataclass(frozen=True)
class Selection:
    """The instances of a request the caller may see, and the key they are shown with."""

    docs: list[dict[str, Any]]
    key: AnonymizationKey | None


async def select(
    stores: DicomStores,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> Selection:
    """A study, series or instance as the decision lets the caller see it."""
    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid, sop_uid)
    return Selection(docs, await study_key(stores, decision, study_uid))


async def one_instance(
    stores: DicomStores, decision: AccessDecision, study_uid: str, series_uid: str, sop_uid: str
) -> dict[str, Any]:
    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid, sop_uid)
    return docs[0]


# --- reading -----------------------------------------------------------------------------


async def instances(stores: DicomStores, chosen: Selection) -> MultipartAnswer:
    """The selected instances as multipart/related (anonymized on anonymized shares)."""
    return await multipart.dicom_instances(stores.blobs, chosen.docs, chosen.key)


def metadata(stores: DicomStores, chosen: Selection, study_uid: str, base: str) -> bytes:
    """The selected instances' metadata as a DICOM JSON array; as stored, each instance's
    answer is kept with the study's instances (`StudyInstances.rendered`)."""
    if chosen.key is not None:
        return json.dumps([metadata_of(doc, base, chosen.key) for doc in chosen.docs]).encode()
    parts = [
        stores.instances.rendered(
            study_uid,
            ("metadata", base, doc["_id"]),
            lambda doc=doc: json.dumps(metadata_of(doc, base, None)).encode(),
        )
        for doc in chosen.docs
    ]
    return b"[" + b", ".join(parts) + b"]"


async def frames(
    stores: DicomStores, doc: dict[str, Any], numbers: list[int]
) -> tuple[str, list[Frame], Iterator[Frame] | None]:
    """Frames of an instance (`adapters.pixels.read_frames`, in a worker thread)."""
    try:
        return await anyio.to_thread.run_sync(
            pixels.read_frames, stores.blobs, doc["path"], numbers
        )
    except RuleViolation:
        raise
    except Exception as exc:
        raise NotRenderable(f"the frames cannot be read: {type(exc).__name__}") from exc


async def rendered(
    stores: DicomStores,
    doc: dict[str, Any],
    frame: int,
    media: RenderedMedia,
    window: tuple[float, float] | None,
    quality: int,
) -> bytes:
    """One frame of an instance rendered (in a worker thread)."""
    return await anyio.to_thread.run_sync(
        pixels.render, stores.blobs, doc["path"], frame, media, window, quality
    )


async def thumbnail(
    stores: DicomStores,
    decision: AccessDecision,
    study_uid: str,
    series_uid: str | None,
    sop_uid: str | None,
    media: RenderedMedia,
    viewport: tuple[int, int],
) -> bytes:
    """A small rendering of the middle image of the (first image series of the) selection."""
    require_images(decision)
    docs = await visible_instances(stores, decision, study_uid, series_uid, sop_uid)
    doc, frame = thumbnail_of(docs)
    return await anyio.to_thread.run_sync(
        pixels.render, stores.blobs, doc["path"], frame, media, None, 80, viewport
    )
