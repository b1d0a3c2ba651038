"""`python -m studyshare.study_store api|relay|worker|replay|scp|blobs`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from studyshare.plumbing.cli import ServiceCLI
from studyshare.study_store.entrypoints.worker import projections
from studyshare.study_store.settings import StudyStoreSettings

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from studyshare.study_store.adapters.blobstore import BlobStore

cli = ServiceCLI(
    settings=StudyStoreSettings,
    app_factory="studyshare.study_store.entrypoints.api:create_app",
    projections=projections,
)


@cli.app.command("scp", help="Run the DICOM C-STORE receiver.")
def scp() -> None:
    from studyshare.study_store.entrypoints import scp as receiver

    receiver.run(StudyStoreSettings())


blobs = typer.Typer(
    no_args_is_help=True, help="Operate the blob store (STUDYSHARE_BLOB_BACKEND and its settings)."
)
cli.app.add_typer(blobs, name="blobs")


@blobs.command("verify", help="Check every indexed instance against its stored object.")
def verify_blobs(
    digests: Annotated[bool, typer.Option(help="also compare each object's SHA-256")] = False,
) -> None:
    from studyshare.study_store.service_layer import blob_maintenance

    async def run() -> dict[str, object]:
        async with _store() as (db, store):
            return (await blob_maintenance.verify(db, store, digests)).summary()

    summary = asyncio.run(run())
    print(json.dumps(summary))
    raise typer.Exit(0 if summary["ok"] else 1)


@blobs.command("copy-dir", help="Copy a blob directory into the configured store, key by key.")
def copy_blobs(source: Annotated[Path, typer.Argument(help="the old STUDYSHARE_BLOB_DIR")]) -> None:
    from studyshare.study_store.service_layer import blob_maintenance

    async def run() -> tuple[int, int]:
        async with _store() as (_db, store):
            return await blob_maintenance.copy_directory(source, store)

    copied, skipped = asyncio.run(run())
    print(json.dumps({"copied": copied, "already_there": skipped}))


@blobs.command("sweep", help="GridFS: remove uploads cut short more than --hours ago.")
def sweep_blobs(hours: Annotated[float, typer.Option(min=0)] = 24.0) -> None:
    from datetime import timedelta

    from studyshare.study_store.adapters.gridfs_blobstore import GridFSBlobStore

    async def run() -> int:
        async with _store() as (_db, store):
            if not isinstance(store, GridFSBlobStore):
                raise typer.BadParameter("sweep is for the gridfs blob backend")
            return await store.sweep(timedelta(hours=hours))

    print(json.dumps({"removed": asyncio.run(run())}))


@contextlib.asynccontextmanager
async def _store() -> AsyncIterator[tuple[AsyncDatabase, BlobStore]]:
    """The service's database and its blob store, as the settings give them."""
    from studyshare.plumbing.logging import configure_logging
    from studyshare.plumbing.mongo import mongo_client
    from studyshare.study_store.adapters.blobstore import blob_store

    settings = StudyStoreSettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    client = mongo_client(settings)
    try:
        db = client[settings.database_name]
        store = blob_store(settings, db)
        await store.setup()
        yield db, store
    finally:
        await client.close()


if __name__ == "__main__":
    cli()
