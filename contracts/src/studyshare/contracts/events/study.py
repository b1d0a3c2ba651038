"""Events of the study store (`study.events`)."""

from __future__ import annotations

from studyshare.contracts.events.base import DomainEvent, registry


@registry.register
class StudyReceived(DomainEvent):
    """A study arrived (STOW-RS or C-STORE) and belongs to a sending department."""

    aggregate_type = "Study"

    study_uid: str
    department_id: str | None = None
    owner_id: str | None = None
    upload_batch_id: str | None = None
    patient_initials: str = ""
    description: str = ""
    study_date: str | None = None
    modalities: tuple[str, ...] = ()
