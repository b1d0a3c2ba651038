"""`python -m studyshare.study_store api|relay|worker|replay|scp`."""

from __future__ import annotations

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
    from studyshare.study_store.entrypoints import scp as receiver

    receiver.run(StudyStoreSettings())


if __name__ == "__main__":
    cli()
