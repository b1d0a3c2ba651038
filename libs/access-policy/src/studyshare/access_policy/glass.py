"""Who may break the glass on a study: the study department's policy. Pure.

- `institution` (default): the staff and physicians of the same institution (a department
  without an `institution_id` is an institution of its own);
- `nobody`;
- `environment`: any approved physician of the same environment (the department's country).

Never an auditor, never a patient or a service, and never over a revocation, a lock, an expiry
(or a pending two-factor verification) of a bucket of the study the caller was in. An unlock
lasts only while the policy still lets its user in (a stricter policy, or a user who left the
institution, ends it): the study store's decisions and audit's "who could open it at T" both
ask `why_not_break_the_glass` at the moment they decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from studyshare.access_policy.rules import GLASS_STOPPERS

BreakTheGlassPolicy = Literal["institution", "environment", "nobody"]
INSTITUTION_ROLES = frozenset({"physician", "department_staff", "department_admin"})
NEVER_BREAK_THE_GLASS = frozenset({"auditor"})


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
