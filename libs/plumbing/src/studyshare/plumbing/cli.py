"""The command line every service shares: `api`, `relay`, `worker`, `replay`.

A service's `__main__` builds a `ServiceCLI` with its settings class, app factory and
projections; each command is one process (one Kubernetes Deployment). Every process sets up
its logging and, when an OTLP endpoint is configured, its traces (`plumbing.tracing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import faust
import typer
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from studyshare.plumbing import heap
from studyshare.plumbing.kafka import ensure_topics, producer
from studyshare.plumbing.logging import configure_logging, get_logger
from studyshare.plumbing.mongo import mongo_client
from studyshare.plumbing.projection import Projection
from studyshare.plumbing.relay import OutboxRelay
from studyshare.plumbing.replay import replay_projection
from studyshare.plumbing.settings import ServiceSettings
from studyshare.plumbing.tracing import configure_tracing

log = get_logger(__name__)


class StructlogWorker(faust.Worker):
    """A faust worker that keeps our JSON logging instead of installing its own."""

    settings: ServiceSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # faust's start-up spinner writes a terminal escape (show cursor) to stdout even when
        # it is a log file, glued to the front of the next JSON log line: no spinner.
        self.spinner = None

    def _setup_logging(self) -> None:
        configure_logging(
            self.settings.service_name, self.settings.log_level, self.settings.log_json
        )


class SettledServer(uvicorn.Server):
    """uvicorn's server, which settles the process's heap once the app has started
    (`studyshare.plumbing.heap`): the command's, not the app's, so that tests building apps
    by the hundred in one process keep Python's defaults."""

    def __init__(self, config: uvicorn.Config, gc_full_threshold: int) -> None:
        super().__init__(config)
        self.gc_full_threshold = gc_full_threshold

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            heap.settle(self.gc_full_threshold)


class ServiceCLI:
    def __init__(
        self,
        *,
        settings: Callable[[], ServiceSettings],
        app_factory: str,
        projections: Callable[[ServiceSettings], Sequence[Projection]] = lambda s: (),
        has_relay: bool = True,
    ) -> None:
        self.settings = settings
        self.app_factory = app_factory
        self.projections = projections
        self.app = typer.Typer(no_args_is_help=True, add_completion=False)
        self.app.command("api", help="Serve the HTTP API.")(self.api)
        if has_relay:
            self.app.command("relay", help="Publish stored events to Kafka.")(self.relay)
        self.app.command("worker", help="Run the projections and reactions.")(self.worker)
        self.app.command("replay", help="Rebuild a projection from offset 0.")(self.replay)

    def _settings(self, process: str) -> ServiceSettings:
        settings = self.settings()
        configure_logging(settings.service_name, settings.log_level, settings.log_json)
        if configure_tracing(settings, process):
            log.info("tracing.enabled", endpoint=settings.otel_exporter_otlp_endpoint)
        return settings

    def api(
        self,
        port: Annotated[int | None, typer.Option(help="Override STUDYSHARE_HTTP_PORT")] = None,
    ) -> None:
        settings = self._settings("api")
        config = uvicorn.Config(
            self.app_factory,
            factory=True,
            host=settings.http_host,
            port=port or settings.http_port,
            log_config=None,
            access_log=False,
            timeout_keep_alive=settings.http_keep_alive_s,
            loop="uvloop",
            http="httptools",
        )
        server = SettledServer(config, settings.gc_full_threshold)
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:
            raise typer.Exit(STARTUP_FAILURE)

    def relay(
        self,
        port: Annotated[
            int | None, typer.Option(help="Serve Prometheus /metrics on this port")
        ] = None,
    ) -> None:
        settings = self._settings("relay")
        if port is not None:
            from prometheus_client import start_http_server

            start_http_server(port, addr=settings.http_host)

        async def run() -> None:
            await ensure_topics(settings.kafka)
            client = mongo_client(settings)
            kafka = producer(settings)
            await kafka.start()
            relay = OutboxRelay(
                client[settings.database_name],
                kafka,
                batch_size=settings.relay_batch_size,
                rescan_s=settings.relay_rescan_s,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, relay.stop)
            log.info("relay.started")
            try:
                await relay.run()
            finally:
                await kafka.stop()
                await client.close()
                log.info("relay.stopped")

        asyncio.run(run())

    def worker(
        self,
        port: Annotated[int | None, typer.Option(help="Port of the worker's health page")] = None,
    ) -> None:
        from studyshare.plumbing.worker import worker_app

        settings = self._settings("worker")
        asyncio.run(ensure_topics(settings.kafka))
        app = worker_app(settings, self.projections(settings), web_port=port)
        worker = StructlogWorker(
            app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False
        )
        worker.settings = settings
        worker.execute_from_commandline()

    def replay(self, projection: Annotated[str, typer.Argument(help="Projection name")]) -> None:
        settings = self._settings("replay")
        chosen = [p for p in self.projections(settings) if p.name == projection]
        if not chosen:
            names = ", ".join(p.name for p in self.projections(settings))
            raise typer.BadParameter(f"unknown projection {projection!r}; known: {names}")

        async def run() -> None:
            client = mongo_client(settings)
            generation, applied = await replay_projection(
                chosen[0], client[settings.database_name], settings.kafka
            )
            typer.echo(f"{projection}: generation {generation} live, {applied} events applied")
            await client.close()

        asyncio.run(run())

    def __call__(self) -> None:
        self.app()
