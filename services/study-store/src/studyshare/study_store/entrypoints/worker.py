"""What the study-store worker runs (`python -m studyshare.study_store worker|replay`): the
read models (`adapters.projections`) and the reactions (`service_layer.reactions`)."""

from __future__ import annotations

from studyshare.plumbing.projection import Projection
from studyshare.plumbing.settings import ServiceSettings
from studyshare.study_store.adapters.projections import AccessDecisions, DepartmentEndpoints
from studyshare.study_store.service_layer.reactions import reactions
from studyshare.study_store.settings import StudyStoreSettings


def projections(settings: ServiceSettings) -> list[Projection]:
    assert isinstance(settings, StudyStoreSettings)
    return [
        AccessDecisions(settings.anonymization_secret),
        DepartmentEndpoints(),
        *reactions(settings),
    ]
