"""The study store's side of the access policy: its refusals as domain exceptions.

The rules themselves (who may open which study, and how) live once, in
`studyshare.access_policy`, shared with audit's "who could open it at T". A decision's refusal
whose codes (`Refusal`) are mapped here to the exceptions the routes raise.
"""

from __future__ import annotations

from studyshare.access_policy.decision import AccessDecision
from studyshare.access_policy.rules import NO_SUCH_STUDY
from studyshare.plumbing.errors import Forbidden, Locked, NotFound, Unavailable

# Refusals as domain exceptions (problem+json `rule`), raised by the route dependency.


class StudyNotFound(NotFound):
    """No such study, or not one this caller could ever open (existence is not revealed)."""

    @classmethod
    def as_unknown(cls) -> StudyNotFound:
        """The answer to a study never received, word for word."""
        return cls(NO_SUCH_STUDY)


class NoAccessToStudy(Forbidden):
    """No department, owner, grant, group, reference number or break-the-glass path."""


class GrantRevoked(Forbidden):
    pass


class GrantExpired(Forbidden):
    pass


class BucketIsLocked(Locked):
    """Five wrong OTPs in a row locked the bucket: nobody gets in through it until unlocked."""


class TwoFactorVerificationRequired(Forbidden):
    pass


class ReferenceNumberNotUsable(Forbidden):
    pass


class AccountDeactivated(Forbidden):
    pass


class AccessDecisionsUnavailable(Unavailable):
    """The access model stopped following its read model: refuse rather than miss a revoke."""

    title = "Service unavailable"


REFUSALS: dict[str, type[Exception]] = {
    "unknown_study": StudyNotFound,
    "not_your_study": StudyNotFound,
    "no_grant": NoAccessToStudy,
    "revoked": GrantRevoked,
    "expired": GrantExpired,
    "locked": BucketIsLocked,
    "two_factor_required": TwoFactorVerificationRequired,
    "reference_number_unknown": ReferenceNumberNotUsable,
    "reference_number_revoked": ReferenceNumberNotUsable,
    "reference_number_breaks_rule": ReferenceNumberNotUsable,
    "reference_number_not_yet_valid": ReferenceNumberNotUsable,
    "reference_number_expired": ReferenceNumberNotUsable,
    "deactivated": AccountDeactivated,
    "stale": AccessDecisionsUnavailable,
}


def refuse(decision: AccessDecision) -> None:
    """Raise the refusal of a decision that does not allow images."""
    if decision.images:
        return
    cls = REFUSALS.get(decision.refusal or "no_grant", NoAccessToStudy)
    raise cls(decision.reason)


def hides_existence(decision: AccessDecision) -> bool:
    """Whether a refusal leaves the caller no way into the study at all (no grant, no bucket
    of it that ended): unless its department's policy lets them break the glass, they are
    answered as for a study never received (`StudyNotFound`), else anyone could test which
    studies exist. One who may break the glass is told they have no access, so that they can."""
    return (decision.refusal or "no_grant") == "no_grant"
