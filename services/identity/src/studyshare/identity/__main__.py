"""`python -m studyshare.identity api|relay|worker|replay`.

The worker runs the reference-number projection (which opens the pincodes sealed to identity,
so it alone holds the pincode key) and, on a timer, the idempotent group membership reminders
(`service_layer.groups.emit_due_reminders`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from studyshare.identity.adapters.passwords import Passwords
from studyshare.identity.adapters.pincodes import PincodeKeeper
from studyshare.identity.adapters.projections import ReferenceNumbers
from studyshare.identity.settings import IdentitySettings
from studyshare.plumbing.cli import ServiceCLI, StructlogWorker
from studyshare.plumbing.kafka import ensure_topics
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.mongo import mongo_client
from studyshare.plumbing.projection import Projection
from studyshare.plumbing.settings import ServiceSettings

log = get_logger(__name__)


def projections(settings: ServiceSettings) -> list[Projection]:
    """The worker's (and a replay's) projections; refuses a missing pincode key in production."""
    assert isinstance(settings, IdentitySettings)
    passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
    return [ReferenceNumbers(PincodeKeeper(settings.pincode_opening_keys(), passwords))]


class IdentityCLI(ServiceCLI):
    def worker(
        self,
        port: Annotated[int | None, typer.Option(help="Port of the worker's health page")] = None,
    ) -> None:
        from studyshare.plumbing.worker import worker_app

        settings = self._settings("worker")
        assert isinstance(settings, IdentitySettings)
        asyncio.run(ensure_topics(settings.kafka))
        app = worker_app(settings, self.projections(settings), web_port=port)
        state: dict[str, object] = {}

        @app.timer(interval=settings.reminder_interval_s)
        async def group_reminders() -> None:
            from studyshare.identity.service_layer.context import Identity
            from studyshare.identity.service_layer.groups import emit_due_reminders

            try:
                if "identity" not in state:
                    client = mongo_client(settings)
                    state["identity"] = await Identity.start(
                        client[settings.database_name], settings, signing=False
                    )
                await emit_due_reminders(state["identity"])  # type: ignore[arg-type]
            except Exception:
                log.exception("group_reminders.failed")

        worker = StructlogWorker(
            app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False
        )
        worker.settings = settings
        worker.execute_from_commandline()

    def rebuild_read_models(self) -> None:
        """Rebuild users, groups, memberships, departments and recipients from the events."""
        from studyshare.identity.service_layer.rebuild import rebuild_read_models

        settings = self._settings("command")

        async def run() -> None:
            client = mongo_client(settings)
            count = await rebuild_read_models(client[settings.database_name])
            typer.echo(f"read models rebuilt from {count} events")
            await client.close()

        asyncio.run(run())


cli = IdentityCLI(
    settings=IdentitySettings,
    app_factory="studyshare.identity.entrypoints.api:create_app",
    projections=projections,
)
cli.app.command("rebuild-read-models", help="Rebuild identity's read models from its events.")(
    cli.rebuild_read_models
)

if __name__ == "__main__":
    cli()
