"""The consumer runner: a faust-streaming app with one agent per projection.

Each agent takes batches from its topics, applies them through a `ProjectionRunner` (effect and
checkpoint stored in one transaction) and only then lets faust acknowledge the batch, so offsets
are committed after the effect is stored. State lives in MongoDB, never in faust tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from studyshare.contracts.envelope import EventEnvelope
from studyshare.plumbing.kafka import decode
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.mongo import mongo_client
from studyshare.plumbing.projection import Projection, ProjectionRunner
from studyshare.plumbing.settings import ServiceSettings

log = get_logger(__name__)


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
    state: dict[str, object] = {}

    async def database():
        if "db" not in state:
            client = mongo_client(settings)
            state["client"] = client
            state["db"] = client[settings.database_name]
        return state["db"]

    for projection in projections:
        topic = app.topic(*projection.topics, key_serializer="raw", value_serializer="raw")

        async def consume(stream, projection: Projection = projection) -> None:
            runner = ProjectionRunner(projection, await database())
            async for batch in stream.take(
                settings.consumer_batch_size, within=settings.consumer_batch_within_s
            ):
                envelopes = [e for e in map(decode, batch) if e is not None]
                await apply_with_retry(runner, envelopes)

        app.agent(topic, name=f"{settings.service_name}.{projection.name}", concurrency=1)(consume)

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
                return web.json({"status": "unavailable", "detail": str(exc)}, status=503)
            return web.json({"status": "ready"})

        @app.page("/metrics")
        async def metrics(web, request):
            return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    return app


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
