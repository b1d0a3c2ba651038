"""`python -m studyshare.study_store api|relay|worker|replay|scp`."""

from __future__ import annotations

import importlib

import typer

from studyshare.plumbing.cli import ServiceCLI
from studyshare.study_store.entrypoints.projections import projections
from studyshare.study_store.settings import StudyStoreSettings

cli = ServiceCLI(
    settings=StudyStoreSettings,
    app_factory="studyshare.study_store.entrypoints.api:create_app",
    projections=projections,
)


@cli.app.command("scp", help="Run the DICOM C-STORE receiver.")
def scp() -> None:
    try:
        module = importlib.import_module("studyshare.study_store.entrypoints.scp")
    except ModuleNotFoundError as exc:
        typer.echo("the C-STORE receiver is not part of this build", err=True)
        raise typer.Exit(2) from exc
    if hasattr(module, "main"):
        module.main()
    else:
        module.run(StudyStoreSettings())


if __name__ == "__main__":
    cli()
