"""Identity's refusals answer with the statuses they always did, mapped at the edge
(`entrypoints.errors`), not carried by the domain (issue 18, point 2)."""

from __future__ import annotations

from studyshare.identity.domain import exceptions as refusals
from studyshare.identity.entrypoints.errors import STATUS
from studyshare.plumbing.http import status_of


def test_identity_refusals_answer_with_their_statuses() -> None:
    assert status_of(refusals.WrongEnvironment("elsewhere", "nl", None), STATUS) == 421
    assert status_of(refusals.PaymentPending("not paid"), STATUS) == 402
    assert status_of(refusals.InvalidCredentials(), STATUS) == 401
    assert status_of(refusals.LoginTemporarilyLocked("wait", 60), STATUS) == 429
    assert status_of(refusals.UsernameTaken("taken"), STATUS) == 409
    assert status_of(refusals.WeakPassword("weak"), STATUS) == 422
