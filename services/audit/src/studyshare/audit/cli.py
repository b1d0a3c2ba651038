"""The audit command line: the shared commands (no relay: audit writes no events) plus
`verify` (walk the hash chains, exit 1 and name the seq of every problem)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from studyshare.audit.adapters.projections import (
    AuditLogProjection,
    ensure_indexes,
    projections,
)
from studyshare.audit.adapters.store import AuditStore
from studyshare.audit.service_layer.queries import verify_report
from studyshare.audit.settings import AuditSettings
from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.plumbing.cli import ServiceCLI
from studyshare.plumbing.mongo import mongo_client
from studyshare.plumbing.projection import GenerationPointer


class AuditCLI(ServiceCLI):
    def __init__(self) -> None:
        super().__init__(
            settings=AuditSettings,
            app_factory="studyshare.audit.entrypoints.api:create_app",
            projections=projections,
            has_relay=SERVICE_BY_NAME["audit"].has_relay,
        )
        self.app.command("verify", help="Check the hash chains of the audit log.")(self.verify)
        self.app.registered_commands = [
            c for c in self.app.registered_commands if c.name != "replay"
        ]
        self.app.command("replay", help="Rebuild a projection from offset 0.")(self.replay)

    def replay(self, projection: Annotated[str, typer.Argument(help="Projection name")]) -> None:
        """The shared replay (new generation from offset 0, atomic switch), then the indexes
        of the new generation, which a rebuild loads without them."""
        super().replay(projection)
        settings = self._settings("replay")

        async def run() -> None:
            client = mongo_client(settings)
            try:
                db = client[settings.database_name]
                generation = await GenerationPointer(db, AuditLogProjection.name).current()
                await ensure_indexes(db, generation)
            finally:
                await client.close()

        asyncio.run(run())
        typer.echo(f"{projection}: indexes of the live generation built")

    def verify(self) -> None:
        settings = self._settings("command")

        async def run() -> dict:
            client = mongo_client(settings)
            try:
                return await verify_report(AuditStore(client[settings.database_name]))
            finally:
                await client.close()

        report = asyncio.run(run())
        typer.echo(json.dumps(report, indent=2, default=str))
        for chain in ("study_log", "audit_reads"):
            for p in report[chain]["problems"]:
                typer.echo(f"{chain}: seq {p['seq']} {p['kind']}: {p['detail']}", err=True)
        raise typer.Exit(0 if report["ok"] else 1)


cli = AuditCLI()
