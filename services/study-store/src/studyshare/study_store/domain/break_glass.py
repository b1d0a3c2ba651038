"""Break-the-glass: a user without a grant opens a study by giving a reason.

Who may break the glass on a department's studies is that department's policy
(`DepartmentPolicySet.break_the_glass`):

- `institution` (default): the staff and physicians of the same institution (a department
  without an `institution_id` is an institution of its own);
- `nobody`;
- `environment`: any approved physician of the same environment (the department's country).

Never an auditor, never a patient or a service, and never over a revocation, a lock, an expiry
(or a pending two-factor verification) of a bucket of the study the caller was in. A refusal
says nothing more than that, and an unknown study is refused with the very same answer, so the
route tells nobody which studies exist.

The unlock lasts a limited time, is always logged (`BreakTheGlassUsed`, its own aggregate
`btg_<random>`) and is a security alert: audit and notify consume the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from studyshare.contracts.events.identity import BreakTheGlassPolicy
from studyshare.contracts.events.study import BreakTheGlassUsed
from studyshare.study_store.domain.access import AccessDecision
from studyshare.study_store.domain.access_rules import GLASS_STOPPERS
from studyshare.study_store.domain.exceptions import (
    BreakTheGlassNotAllowed,
    BreakTheGlassNotNeeded,
    BreakTheGlassReasonRequired,
)

MAX_REASON = 2000
INSTITUTION_ROLES = frozenset({"physician", "department_staff", "department_admin"})
NEVER_BREAK_THE_GLASS = frozenset({"auditor"})
NOT_ALLOWED = "you may not break the glass on this study"


@dataclass(frozen=True)
class GlassFacts:
    """What decides whether one caller may break the glass on one study, gathered by the
    access model from the identity and share events it follows."""

    study_known: bool
    policy: BreakTheGlassPolicy = "institution"
    institution_id: str | None = None
    """The study department's institution (its own id when it names none)."""
    environment: str | None = None
    """The study department's environment (country)."""
    caller_institutions: frozenset[str] = frozenset()
    caller_environment: str | None = None
    bucket_refusal: str | None = None
    """Why a bucket of the study the caller was in no longer opens it, if one does not."""


def why_not_break_the_glass(kind: str, roles: frozenset[str], facts: GlassFacts) -> str | None:
    """None when the caller may break the glass on the study; else why not (for the logs only:
    the caller is told `NOT_ALLOWED`, whatever the reason)."""
    if kind != "user":
        return "only users break the glass"
    if roles & NEVER_BREAK_THE_GLASS:
        return "auditors never break the glass"
    if not facts.study_known:
        return "unknown study"
    if facts.bucket_refusal in GLASS_STOPPERS:
        return f"a bucket of the study the caller was in is {facts.bucket_refusal}"
    match facts.policy:
        case "institution":
            if not roles & INSTITUTION_ROLES:
                return "only staff and physicians of the institution"
            if facts.institution_id not in facts.caller_institutions:
                return "the caller is not of the study department's institution"
        case "environment":
            if "physician" not in roles:
                return "only physicians of the environment"
            if facts.environment is None or facts.caller_environment != facts.environment:
                return "the caller is not of the study department's environment"
        case _:
            return "the department lets nobody break the glass"
    return None


def break_the_glass(
    *,
    kind: str,
    roles: tuple[str, ...],
    user_id: str,
    study_uid: str,
    department_id: str | None,
    reason: str,
    current: AccessDecision,
    glass: GlassFacts,
    now: datetime,
    duration: timedelta,
) -> BreakTheGlassUsed:
    reason = reason.strip()
    if not reason:
        raise BreakTheGlassReasonRequired("a reason is required to break the glass")
    if len(reason) > MAX_REASON:
        raise BreakTheGlassReasonRequired(f"the reason is limited to {MAX_REASON} characters")
    if current.images and current.via not in ("service_desk", "break_the_glass"):
        raise BreakTheGlassNotNeeded(f"you can already open this study ({current.via})")
    if why_not_break_the_glass(kind, frozenset(roles), glass) is not None:
        raise BreakTheGlassNotAllowed(NOT_ALLOWED)
    return BreakTheGlassUsed(
        study_uid=study_uid,
        user_id=user_id,
        reason=reason,
        department_id=department_id,
        valid_until=now + duration,
    )
