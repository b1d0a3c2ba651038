"""The break-the-glass command: unlock a study for a limited time, as the study department's
policy allows; always logged and alerted. A refusal is logged with its reason and answered
without one; an unknown study is answered like a refusal."""

from __future__ import annotations

from datetime import timedelta

from studyshare.access_policy.decision import AccessDecision
from studyshare.access_policy.glass import why_not_break_the_glass
from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.aggregate import Events
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.logging import get_logger
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.domain.access_rules import hides_existence
from studyshare.study_store.domain.break_glass import break_the_glass
from studyshare.study_store.domain.exceptions import BreakTheGlassNotAllowed, StudyNotFound

log = get_logger(__name__)


async def hide_from_outsiders(
    model: AccessModel, principal: AccessClaims, refused: AccessDecision
) -> None:
    """Answer a refused caller with no way into the study, who may not break the glass on it
    either, as for a study never received (`hides_existence`); the glass is asked only then."""
    if hides_existence(refused) and not await model.may_break_the_glass(
        principal, refused.study_uid
    ):
        raise StudyNotFound.as_unknown()


async def break_glass(
    store: Events,
    model: AccessModel,
    principal: AccessClaims,
    study_uid: str,
    reason: str,
    duration: timedelta,
) -> EventEnvelope:
    study = await model.study(study_uid)
    glass = await model.break_glass_facts(principal, study_uid)
    try:
        event = break_the_glass(
            kind=principal.kind,
            roles=tuple(principal.roles),
            user_id=principal.sub,
            study_uid=study_uid,
            department_id=study.get("department_id") if study else None,
            reason=reason,
            current=await model.decide(principal, study_uid),
            glass=glass,
            now=model.clock(),
            duration=duration,
        )
    except BreakTheGlassNotAllowed:
        log.warning(
            "security.break_the_glass_refused",
            study_uid=study_uid,
            user_id=principal.sub,
            why=why_not_break_the_glass(principal.kind, frozenset(principal.roles), glass),
        )
        raise
    envelope = envelope_for(
        event,
        aggregate_id=new_id("btg"),
        aggregate_version=1,
        actor=Actor(kind="user", id=principal.sub, role="break_the_glass"),
    )
    await store.append([envelope])
    model.apply_local([envelope])
    log.warning("security.break_the_glass", study_uid=study_uid, user_id=principal.sub)
    return envelope
