"""Break-the-glass: a user without a grant opens a study by giving a reason.

The unlock lasts a limited time, is always logged (`BreakTheGlassUsed`, its own aggregate
`btg_<random>`) and is a security alert: audit and notify consume the event.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from studyshare.contracts.events.study import BreakTheGlassUsed
from studyshare.plumbing.errors import Conflict, Forbidden, RuleViolation
from studyshare.study_store.domain.access import AccessDecision

MAX_REASON = 2000
MAY_BREAK_THE_GLASS = ("physician", "department_staff", "department_admin")


class BreakTheGlassReasonRequired(RuleViolation):
    pass


class BreakTheGlassNotAllowed(Forbidden):
    """Patients, auditors and service accounts never break the glass."""


class BreakTheGlassNotNeeded(Conflict):
    """The caller can already open the study; no alert is raised for nothing."""


def break_the_glass(
    *,
    kind: str,
    roles: tuple[str, ...],
    user_id: str,
    study_uid: str,
    department_id: str | None,
    reason: str,
    current: AccessDecision,
    now: datetime,
    duration: timedelta,
) -> BreakTheGlassUsed:
    if kind != "user" or not any(r in roles for r in MAY_BREAK_THE_GLASS):
        raise BreakTheGlassNotAllowed("only physicians and department staff break the glass")
    reason = reason.strip()
    if not reason:
        raise BreakTheGlassReasonRequired("a reason is required to break the glass")
    if len(reason) > MAX_REASON:
        raise BreakTheGlassReasonRequired(f"the reason is limited to {MAX_REASON} characters")
    if current.images and current.via not in ("service_desk", "break_the_glass"):
        raise BreakTheGlassNotNeeded(f"you can already open this study ({current.via})")
    return BreakTheGlassUsed(
        study_uid=study_uid,
        user_id=user_id,
        reason=reason,
        department_id=department_id,
        valid_until=now + duration,
    )
