"""The study store's refusals answer with the statuses they always did, mapped at the edge
(`entrypoints.errors`), not carried by the domain (issue 18, point 2)."""

from __future__ import annotations

import pytest

from studyshare.plumbing.http import status_of
from studyshare.study_store.domain import exceptions as refusals
from studyshare.study_store.entrypoints.errors import STATUS


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (refusals.NotRenderable, 406),
        (refusals.FrameListTooLong, 400),
        (refusals.UnsupportedMediaType, 415),
        (refusals.UnsupportedReportType, 415),
        (refusals.ReportNotAPdf, 415),
        (refusals.UploadTooLarge, 413),
        (refusals.ReportTooLarge, 413),
        (refusals.AccessDecisionsUnavailable, 503),
        (refusals.ForwardNotAllowed, 403),
        (refusals.BarrierEventsRefused, 422),
        (refusals.BucketIsLocked, 423),
        (refusals.StudyNotFound, 404),
    ],
    ids=lambda each: getattr(each, "__name__", str(each)),
)
def test_study_store_refusals_answer_with_their_statuses(refusal: type, status: int) -> None:
    assert status_of(refusal("refused"), STATUS) == status
