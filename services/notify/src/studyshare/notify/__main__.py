"""`python -m studyshare.notify api|relay|worker|replay`.

The worker runs the projections (faust agents) and, beside them, the sender loop that delivers
the queued messages (a faust `app.task`), so queueing never waits for a mail server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated

import typer

from studyshare.notify.adapters.projections import DirectoryProjection, ReactionsProjection
from studyshare.notify.domain.reactions import ReactionOptions
from studyshare.notify.settings import NotifySettings
from studyshare.plumbing.cli import ServiceCLI, StructlogWorker
from studyshare.plumbing.kafka import ensure_topics
from studyshare.plumbing.mongo import mongo_client
from studyshare.plumbing.projection import Projection
from studyshare.plumbing.settings import ServiceSettings


def projections(settings: ServiceSettings) -> Sequence[Projection]:
    assert isinstance(settings, NotifySettings)
    options = ReactionOptions(notify_pending_registrations=settings.notify_pending_registrations)
    max_age = timedelta(seconds=settings.reaction_max_age_s)
    return [DirectoryProjection(), ReactionsProjection(options, max_age)]


class NotifyCLI(ServiceCLI):
    def worker(
        self,
        port: Annotated[int | None, typer.Option(help="Port of the worker's health page")] = None,
    ) -> None:
        from studyshare.notify.service_layer.sender import Sender
        from studyshare.plumbing.worker import worker_app

        settings = self._settings("worker")
        assert isinstance(settings, NotifySettings)
        settings.require_delivery_secrets()
        asyncio.run(ensure_topics(settings.kafka))
        app = worker_app(settings, self.projections(settings), web_port=port)

        @app.task
        async def deliver() -> None:
            client = mongo_client(settings)
            await Sender(client[settings.database_name], settings).run_forever()

        worker = StructlogWorker(
            app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False
        )
        worker.settings = settings
        worker.execute_from_commandline()


cli = NotifyCLI(
    settings=NotifySettings,
    app_factory="studyshare.notify.entrypoints.api:create_app",
    projections=projections,
)

if __name__ == "__main__":
    cli()
