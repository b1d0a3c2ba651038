"""A worker's Kafka consumer waits for new events as long as its settings say, not faust's
fixed 1,500 ms: the local broker (Tansu) answers a fetch only when that wait ends, so it was
added to every event's way through a worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from studyshare.plumbing.settings import ServiceSettings
from studyshare.plumbing.worker import worker_app


async def test_the_worker_consumer_fetches_with_the_configured_wait(tmp_path: Path):
    settings = ServiceSettings(
        environment="test", kafka_fetch_max_wait_ms=123, worker_data_dir=tmp_path
    )
    app = worker_app(settings, [])
    consumer = app.consumer._thread._create_consumer(asyncio.get_running_loop())
    try:
        assert consumer._fetch_max_wait_ms == 123
    finally:
        await consumer.stop()
