"""`python -m studyshare.study_store api|relay|worker|replay|scp`."""

from __future__ import annotations

from studyshare.plumbing.cli import ServiceCLI
from studyshare.study_store.settings import StudyStoreSettings


def projections(settings):
    from studyshare.study_store.entrypoints.dicom_projections import dicom_projections

    return [*dicom_projections(settings)]


cli = ServiceCLI(
    settings=StudyStoreSettings,
    app_factory="studyshare.study_store.entrypoints.api:create_app",
    projections=projections,
)


@cli.app.command("scp", help="Receive DICOM by C-STORE (AE title and port from settings).")
def scp() -> None:
    from studyshare.study_store.entrypoints.scp import run

    run(cli._settings())  # type: ignore[arg-type]


if __name__ == "__main__":
    cli()
