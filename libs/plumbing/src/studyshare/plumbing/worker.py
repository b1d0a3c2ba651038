"""The consumer runner: a faust-streaming app with one agent per projection.

Each agent takes batches from its topics, applies them through a `ProjectionRunner` (effect and
checkpoint stored in one transaction) and only then lets faust acknowledge the batch, so offsets
are committed after the effect is stored. State lives in MongoDB, never in faust tables.

Each event is applied under a consumer span (`plumbing.tracing`), a child of the trace context
in its message headers; the spans of a batch last as long as its transaction, whose database
calls hang under the first event's span. The worker also measures its consumer group's lag
(`plumbing.lag`) every `consumer_lag_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from studyshare.contracts.envelope import EventEnvelope
from studyshare.plumbing import tracing
from studyshare.plumbing.kafka import decode
from studyshare.plumbing.lag import LagMeter
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.metrics import record_readiness
from studyshare.plumbing.mongo import mongo_client
from studyshare.plumbing.projection import Projection, ProjectionRunner
from studyshare.plumbing.settings import ServiceSettings

log = get_logger(__name__)


def _consumer_class(fetch_max_wait_ms: int) -> type[AIOKafkaDriverConsumer]:
    """faust's aiokafka consumer with the fetch wait of the settings instead of its fixed
    1,500 ms (aiokafka hands `_fetch_max_wait_ms` to its fetcher when the consumer starts)."""

    class FetchWaitConsumerThread(AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class FetchWaitConsumer(AIOKafkaDriverConsumer):
        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    return FetchWaitConsumer


def worker_app(
    settings: ServiceSettings,
    projections: Sequence[Projection],
    *,
    web_port: int | None = None,
) -> faust.App:
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"studyshare-{settings.service_name}-worker",
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=settings.kafka.faust_credentials(),
        store="memory://",
        datadir=str(settings.worker_data_dir / "{conf.name}"),
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout_ms / 1000,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        producer_acks=-1,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind=settings.http_host,
        web_in_thread=False,
        loghandlers=[],
    )
    app.transport.Consumer = _consumer_class(settings.kafka_fetch_max_wait_ms)
    state: dict[str, object] = {}

    async def database():
        if "db" not in state:
            client = mongo_client(settings)
            state["client"] = client
            state["db"] = client[settings.database_name]
        return state["db"]

    group = f"studyshare-{settings.service_name}-worker"
    for projection in projections:
        topic = app.topic(*projection.topics, key_serializer="raw", value_serializer="raw")

        async def consume(stream, projection: Projection = projection) -> None:
            runner = ProjectionRunner(projection, await database())
            async for events in stream.take_events(
                settings.consumer_batch_size, within=settings.consumer_batch_within_s
            ):
                await apply_deliveries(runner, [Delivery.of(event) for event in events], group)

        app.agent(topic, name=f"{settings.service_name}.{projection.name}", concurrency=1)(consume)

    if projections:
        meter = LagMeter(settings.kafka, group, sorted({t for p in projections for t in p.topics}))

        @app.timer(interval=settings.consumer_lag_interval_s)
        async def measure_lag() -> None:
            try:
                await meter.measure()
            except Exception as exc:
                log.warning("consumer_lag.unavailable", error=str(exc))
                with contextlib.suppress(Exception):
                    await meter.close()

    if web_port is not None:

        @app.page("/healthz")
        async def healthz(web, request):
            return web.json({"status": "ok"})

        @app.page("/readyz")
        async def readyz(web, request):
            db = await database()
            try:
                await db.command("ping")
            except Exception as exc:
                record_readiness(False)
                return web.json({"status": "unavailable", "detail": str(exc)}, status=503)
            record_readiness(True)
            return web.json({"status": "ready"})

        @app.page("/metrics")
        async def metrics(web, request):
            # aiohttp takes the charset apart from the content type, so in the header as is
            return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app


@dataclass(frozen=True)
class Delivery:
    """One consumed message: its value, where it came from and its headers."""

    value: bytes
    topic: str
    partition: int
    offset: int
    headers: Any = None

    @classmethod
    def of(cls, event: Any) -> Delivery:
        """From a faust event (or anything with `.value` and a `.message` like it)."""
        message = event.message
        return cls(event.value, message.topic, message.partition, message.offset, message.headers)


async def apply_deliveries(runner: ProjectionRunner, deliveries: Sequence[Delivery], group: str):
    """Decode and apply one batch; each event under a consumer span, a child of the trace
    context its message carries (when it carries one)."""
    envelopes, spans = [], []
    for delivery in deliveries:
        envelope = decode(delivery.value)
        if envelope is None:
            continue
        envelopes.append(envelope)
        parent = tracing.context_from_headers(delivery.headers)
        if parent is not None:
            spans.append(
                tracing.tracer().start_span(
                    f"{delivery.topic} process",
                    context=parent,
                    kind=trace.SpanKind.CONSUMER,
                    attributes=tracing.messaging_attributes(
                        delivery.topic,
                        "process",
                        **{
                            "messaging.consumer.group.name": group,
                            "messaging.destination.partition.id": str(delivery.partition),
                            "messaging.kafka.offset": delivery.offset,
                            "messaging.message.id": str(envelope.event_id),
                            "studyshare.projection": runner.projection.name,
                            "studyshare.event_type": envelope.event_type,
                        },
                    ),
                )
            )
    if not spans:
        await apply_with_retry(runner, envelopes)
        return
    with tracing.ending(spans), trace.use_span(spans[0], end_on_exit=False):
        await apply_with_retry(runner, envelopes)


async def apply_with_retry(runner: ProjectionRunner, envelopes: list[EventEnvelope]) -> None:
    """Keep trying a batch until it is stored: skipping it would lose events."""
    delay = 0.1
    while True:
        try:
            await runner.apply_batch(envelopes)
            return
        except Exception:
            log.exception("projection.batch_failed", projection=runner.projection.name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
