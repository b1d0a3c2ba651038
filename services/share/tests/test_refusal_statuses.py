"""The share service's refusals answer with the statuses they always did, mapped at the edge
(`entrypoints.errors`), not carried by the domain (issue 18, point 2)."""

from __future__ import annotations

from studyshare.plumbing.http import status_of
from studyshare.share.domain import exceptions as refusals
from studyshare.share.entrypoints.errors import STATUS


def test_share_refusals_answer_with_their_statuses() -> None:
    assert status_of(refusals.WrongOTP("wrong code"), STATUS) == 401
    assert status_of(refusals.BucketIsLocked("locked"), STATUS) == 423
    assert status_of(refusals.OTPRequestedTooOften("wait", 60), STATUS) == 429
    assert status_of(refusals.BucketAlreadyShared("shared"), STATUS) == 409
    assert status_of(refusals.NotAllowedToRevoke("no"), STATUS) == 403
    assert status_of(refusals.NoStudies("none"), STATUS) == 422
