"""The break-the-glass command: unlock a study for a limited time, always alerted."""

from __future__ import annotations

from datetime import timedelta

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.aggregate import new_id
from studyshare.plumbing.eventstore import EventStore, envelope_for
from studyshare.plumbing.logging import get_logger
from studyshare.study_store.adapters.access_model import InMemoryAccessModel
from studyshare.study_store.domain.access_rules import StudyNotFound
from studyshare.study_store.domain.break_glass import break_the_glass

log = get_logger(__name__)


async def break_glass(
    store: EventStore,
    model: InMemoryAccessModel,
    principal: AccessClaims,
    study_uid: str,
    reason: str,
    duration: timedelta,
) -> EventEnvelope:
    study = model.studies.get(study_uid)
    if study is None:
        raise StudyNotFound("no such study")
    event = break_the_glass(
        kind=principal.kind,
        roles=tuple(principal.roles),
        user_id=principal.sub,
        study_uid=study_uid,
        department_id=study.get("department_id"),
        reason=reason,
        current=model.decide(principal, study_uid),
        now=model.clock(),
        duration=duration,
    )
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
