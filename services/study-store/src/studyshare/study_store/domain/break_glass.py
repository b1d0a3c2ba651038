"""Break-the-glass: a user without a grant opens a study by giving a reason.

Who may break the glass on a department's studies is that department's policy
(`DepartmentPolicySet.break_the_glass`), a rule of the shared access policy
(`studyshare.access_policy.glass`). A refusal says nothing more than that, and an unknown
study is refused with the very same answer, so the route tells nobody which studies exist.

The unlock lasts a limited time, is always logged (`BreakTheGlassUsed`, its own aggregate
`btg_<random>`) and is a security alert: audit and notify consume the event.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from studyshare.access_policy.decision import AccessDecision
from studyshare.access_policy.glass import (
    GlassFacts,
    why_not_break_the_glass,
)
from studyshare.contracts.events.study import BreakTheGlassUsed
from studyshare.study_store.domain.exceptions import (
    BreakTheGlassNotAllowed,
    BreakTheGlassNotNeeded,
    BreakTheGlassReasonRequired,
)

MAX_REASON = 2000
NOT_ALLOWED = "you may not break the glass on this study"


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
