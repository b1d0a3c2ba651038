"""One share, one trace: the share API's request, the relay's publication and every worker that
consumes `share.events` (study-store, notify, audit), under one trace id.

In-process on the real broker and database: the share API (its FastAPI app), the outbox relay
and the four services' real faust worker apps, with an in-memory span exporter.
"""

from __future__ import annotations

import asyncio
import importlib
import time
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pymongo import AsyncMongoClient

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import DepartmentCreated, UserRegistered
from studyshare.contracts.events.study import StudyReceived
from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.plumbing import tracing
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.kafka import producer, topic_partitions
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.plumbing.relay import OutboxRelay
from studyshare.plumbing.settings import ServiceSettings
from studyshare.plumbing.worker import worker_app
from studyshare.share.adapters.projections import Directory
from studyshare.share.entrypoints.api import create_app
from studyshare.share.settings import ShareSettings

CONSUMERS = ("study-store", "notify", "audit")
STUDY = "1.2.826.0.1.77"


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"studyshare.{SERVICE_BY_NAME[service].package}.settings")
    return next(
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, ServiceSettings)
        and v.__module__ == module.__name__
        and v.model_fields["service_name"].default == service
    )


def projections(service: str, settings: ServiceSettings) -> list[Any]:
    main = importlib.import_module(f"studyshare.{SERVICE_BY_NAME[service].package}.__main__")
    return [p for p in main.cli.projections(settings) if "share.events" in p.topics]


async def start_group_at_the_end(settings: ServiceSettings, group: str, topics: list[str]):
    """A new consumer group that starts at today's end of its topics (not at offset 0 of a
    test session's whole log)."""
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, tuple(topics))
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(ends)
    finally:
        await consumer.stop()


async def seed_directory(db) -> None:
    """What the share service's Directory knows from identity and study events."""
    events = [
        UserRegistered(
            user_id="usr_sender",
            username="sender",
            first_name="Dr",
            last_name="Sender",
            language="en",
            department_ids=("dep_1",),
        ),
        UserRegistered(
            user_id="usr_r1", username="r1", first_name="Dr", last_name="R", language="nl"
        ),
        DepartmentCreated(department_id="dep_1", name="Radiology", created_by="t"),
        StudyReceived(
            study_uid=STUDY, department_id="dep_1", owner_id="usr_sender", description="CT"
        ),
    ]
    ids = ["usr_sender", "usr_r1", "dep_1", STUDY]
    await ProjectionRunner(Directory(), db).apply_batch(
        [
            envelope_for(e, aggregate_id=i, aggregate_version=1, actor=Actor(id="t"))
            for e, i in zip(events, ids, strict=True)
        ]
    )


def in_trace(spans: list[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context.trace_id == trace_id]


def consumer_groups(spans: list[ReadableSpan]) -> set[str]:
    return {
        s.attributes.get("messaging.consumer.group.name", "")
        for s in spans
        if s.kind == SpanKind.CONSUMER and s.name == "share.events process"
    }


async def test_a_share_is_one_trace_from_the_request_through_the_relay_to_every_consumer(
    real_infra, mongo_db, test_tokens
) -> None:
    exporter = InMemorySpanExporter()
    settings = real_infra.settings(ShareSettings, database=mongo_db.name)
    assert tracing.configure_tracing(settings, "test", exporter)
    client = AsyncMongoClient(real_infra.mongo_url, tz_aware=True)
    suffix = uuid.uuid4().hex[:8]
    scratch = [f"t_trace_{s.replace('-', '_')}_{suffix}" for s in CONSUMERS]
    workers = []
    try:
        # the consumers: each service's real worker app, as a group of its own starting now
        for service, database in zip(CONSUMERS, scratch, strict=True):
            worker_settings = real_infra.settings(
                settings_class(service), database=database, service_name=f"{service}-{suffix}"
            )
            chosen = projections(service, worker_settings)
            assert chosen, f"{service} has no projection of share.events"
            group = f"studyshare-{worker_settings.service_name}-worker"
            await start_group_at_the_end(
                worker_settings, group, sorted({t for p in chosen for t in p.topics})
            )
            workers.append(worker_app(worker_settings, chosen))

        # the request: the share API in-process, traced by its FastAPI instrumentation
        await seed_directory(mongo_db)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            test_tokens.install(app)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://share") as http:
                response = await http.post(
                    "/api/shares",
                    json={
                        "study_uids": [STUDY],
                        "recipients": [{"kind": "user", "id": "usr_r1"}],
                        "access_level": "images_report_read",
                        "reason": "second opinion",
                        "patient_agreed": True,
                    },
                    headers=test_tokens.user("usr_sender", "physician", department_ids=["dep_1"]),
                )
        assert response.status_code == 201, response.text
        bucket_id = response.json()["bucket_id"]
        stored = await mongo_db.events.find_one({"aggregate_id": bucket_id})
        assert stored["trace"]["traceparent"]  # the outbox keeps the request's trace context

        # the relay publishes the outbox, then the workers consume
        kafka = producer(settings)
        await kafka.start()
        try:
            assert await OutboxRelay(mongo_db, kafka).drain() >= 1
        finally:
            await kafka.stop()
        for worker in workers:
            await worker.start()

        tracing.flush()
        (request,) = [
            s
            for s in exporter.get_finished_spans()
            if s.kind == SpanKind.SERVER and s.name == "POST /api/shares"
        ]
        trace_id = request.context.trace_id
        expected = {f"studyshare-{s}-{suffix}-worker" for s in CONSUMERS}
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            tracing.flush()
            spans = in_trace(list(exporter.get_finished_spans()), trace_id)
            if consumer_groups(spans) >= expected:
                break
            await asyncio.sleep(0.5)
        assert consumer_groups(spans) >= expected, sorted(consumer_groups(spans))

        by_id = {s.context.span_id: s for s in spans}
        published = {
            s.attributes["messaging.message.id"]: s
            for s in spans
            if s.kind == SpanKind.PRODUCER and s.name == "share.events publish"
        }
        assert str(stored["_id"]) in published, "the relay published the share under its trace"
        for span in published.values():
            # the producer span hangs under the request (through the handler's spans)
            parent = span
            while parent.parent is not None and parent.parent.span_id in by_id:
                parent = by_id[parent.parent.span_id]
            assert parent is request
        consumed = [
            s for s in spans if s.kind == SpanKind.CONSUMER and s.name == "share.events process"
        ]
        for span in consumed:
            producer_span = published[span.attributes["messaging.message.id"]]
            assert span.parent.span_id == producer_span.context.span_id
            assert span.attributes["messaging.destination.name"] == "share.events"
        # pymongo's instrumentation: the handler's reads and the append are in the trace
        assert any(s.attributes.get("db.system") == "mongodb" for s in spans)
    finally:
        for worker in workers:
            await worker.stop()
        tracing.reset_tracing()
        for name in scratch:
            await client.drop_database(name)
        await client.close()
