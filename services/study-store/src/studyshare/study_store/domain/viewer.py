"""The viewer token's scope: one study, through the one grant it was opened with.

The portal's image viewer reads a study over DICOMweb with a short-lived viewer token the
study store issues (`entrypoints.viewer`). The token carries the claims of the user or patient
it was issued to, plus its scope: the study and the path of the access decision it was issued
under (`via` and `bucket_id`: the grant). Each request is decided by the access model like any
other, then narrowed here: another study is refused, and so is this study once the decision no
longer goes through that grant (revoked, locked or expired, even while another path remains:
the viewer is opened again from the study page for that one).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims


class ViewerScope(BaseModel):
    """What one viewer token opens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study_uid: str
    via: str
    bucket_id: str | None = None

    @classmethod
    def of(cls, decision: AccessDecision) -> ViewerScope:
        """The scope of a viewer opened under `decision` (which must allow the images)."""
        if not decision.images or decision.via is None:
            raise ValueError("a viewer is only opened on a study the caller may see")
        return cls(study_uid=decision.study_uid, via=decision.via, bucket_id=decision.bucket_id)


class ViewerClaims(AccessClaims):
    """The holder's claims as they were when the viewer token was issued, and its scope.

    Only the DICOMweb read routes accept a viewer token (`entrypoints.dependencies.DicomReader`);
    every other route verifies bearer tokens against identity's keys, which never signed one.
    """

    viewer: ViewerScope


def narrowed(principal: AccessClaims, decision: AccessDecision) -> AccessDecision:
    """The decision as a viewer token may use it: unchanged for any other principal."""
    if not isinstance(principal, ViewerClaims):
        return decision
    scope = principal.viewer
    if decision.study_uid != scope.study_uid:
        return _refused(decision.study_uid, "not_your_study", "a viewer token opens one study")
    if decision.images and (decision.via, decision.bucket_id) != (scope.via, scope.bucket_id):
        return _refused(
            decision.study_uid,
            "revoked",
            "the access this viewer was opened with has ended; open the study again",
            bucket_id=scope.bucket_id,
        )
    return decision


def _refused(
    study_uid: str, refusal: str, reason: str, bucket_id: str | None = None
) -> AccessDecision:
    return AccessDecision(
        study_uid=study_uid,
        images=False,
        report="none",
        download=False,
        anonymized=False,
        via=None,
        reason=reason,
        refusal=refusal,
        bucket_id=bucket_id,
    )
