"""The study store's HTTP application: `create_app()` (uvicorn factory, no arguments).

The lifespan creates the Mongo client, the event store, the access model (following
the read model) and the access log (flushed on shutdown), and puts them on `app.state`; the
DICOM routers' state is installed by `dicomweb.install_dicom(app, db, settings)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.followers import FollowerRegistry
from studyshare.plumbing.http import create_app as plumbing_app
from studyshare.plumbing.http import kafka_ready
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.mongo import mongo_client
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.plumbing.session_feed import follower_id
from studyshare.study_store.adapters.access_documents import MongoAccessDocuments
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.adapters.projections import AccessDecisions
from studyshare.study_store.adapters.report_archive import ReportArchive
from studyshare.study_store.entrypoints import (
    dicomweb,
    downloads,
    forwarding_api,
    internal,
    studies,
    viewer,
)
from studyshare.study_store.entrypoints.anonymized_uids import RemappedUidPaths
from studyshare.study_store.entrypoints.errors import STATUS
from studyshare.study_store.service_layer.access_barrier import ACCESS_FOLLOWERS, AccessBarrier
from studyshare.study_store.service_layer.access_log import AccessLog
from studyshare.study_store.settings import StudyStoreSettings

log = get_logger(__name__)


async def ensure_indexes(store: EventStore) -> None:
    await store.ensure_indexes()
    # Same key and name as the DICOM half creates (one index, whoever comes first).
    await store.events.create_index(
        [("aggregate_type", 1), ("payload.study_uid", 1)], name="by_study"
    )
    await ReportArchive(store.db).ensure_indexes()


def create_app() -> FastAPI:
    settings = StudyStoreSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = mongo_client(settings)
        db = client[settings.database_name]
        store = EventStore(db)
        await ensure_indexes(store)
        followers = FollowerRegistry(
            db[ACCESS_FOLLOWERS], clock_skew_s=settings.follower_clock_skew_s
        )
        await followers.forget_gone(older_than_s=3600)
        model = AccessModel(
            MongoAccessDocuments(db),
            refresh_interval_s=settings.access_refresh_interval_s,
            patient_report_default=settings.patient_report_default,
            patient_download_default=settings.patient_download_default,
            lease_s=settings.access_lease_s,
            registry=followers,
            follower_id=follower_id(settings.service_name),
            cache_docs=settings.access_cache_docs,
            cache_lookups=settings.access_cache_lookups,
            anonymization_secret=settings.anonymization_secret,
            reference_number_secret=settings.reference_number_secret,
        )
        await model.start()
        access_log = AccessLog(
            store,
            window_s=settings.access_log_window_s,
            flush_interval_s=settings.access_log_flush_interval_s,
            apply_local=model.apply_local,  # a first open reads the message here at once
        )
        await access_log.ensure_indexes()
        access_log.start()
        app.state.mongo_client = client
        app.state.db = db
        app.state.event_store = store
        app.state.access_model = model
        app.state.access_log = access_log
        app.state.access_barrier = AccessBarrier(
            db,
            model,
            followers,
            ProjectionRunner(AccessDecisions(settings.anonymization_secret), db),
            max_wait_s=settings.access_barrier_max_wait_s,
        )
        try:
            await dicomweb.install_dicom(app, db, settings)
            yield
        finally:
            await access_log.close()
            await model.stop()
            await client.close()

    async def mongo_ping() -> None:
        await app.state.db.command("ping")

    async def access_model_fresh() -> None:
        model: AccessModel = app.state.access_model
        if not model.fresh:
            raise RuntimeError(f"access model lease lapsed: {model.stats()}")

    routers: list[APIRouter] = [
        studies.router,
        dicomweb.router,
        downloads.router,
        forwarding_api.router,
        internal.router,
        viewer.router,
    ]
    app = plumbing_app(
        settings,
        title="StudyShare study store",
        description="Studies, reports, access decisions, reference numbers, DICOMweb.",
        routers=routers,
        lifespan=lifespan,
        readiness=[mongo_ping, access_model_fresh, kafka_ready(settings.kafka)],
        body_limits={
            **{(method, path): settings.stow_max_bytes for method, path in dicomweb.STOW},
            ("POST", internal.BARRIER): internal.BARRIER_MAX_BYTES,
        },
        statuses=STATUS,
    )
    app.add_middleware(RemappedUidPaths)  # remapped UIDs of anonymized shares
    return app
