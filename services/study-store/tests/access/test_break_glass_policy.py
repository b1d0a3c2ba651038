"""Issue 15, point 4, as pure rules: who may break the glass is the study department's
policy, never an auditor, never over a revoked, locked or expired bucket the caller was in,
and an unknown study is refused like any other refusal."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from studyshare.access_policy.decision import AccessDecision
from studyshare.access_policy.glass import (
    GlassFacts,
    why_not_break_the_glass,
)
from studyshare.access_policy.rules import (
    AccessFacts,
    Bucket,
    Recipient,
    StudyFacts,
    Subject,
    decide,
)
from studyshare.study_store.domain.break_glass import (
    NOT_ALLOWED,
    BreakTheGlassNotAllowed,
    BreakTheGlassNotNeeded,
    break_the_glass,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
UID = "1.2.3.77"
PHYSICIAN = frozenset({"physician"})
STAFF = frozenset({"department_staff"})
SAME = GlassFacts(
    study_known=True,
    institution_id="inst_az",
    environment="be",
    caller_institutions=frozenset({"inst_az"}),
    caller_environment="be",
)
OTHER = replace(SAME, caller_institutions=frozenset({"inst_other"}))
NO_ACCESS = AccessDecision(
    study_uid=UID,
    images=False,
    report="none",
    download=False,
    anonymized=False,
    via=None,
    reason="no",
    refusal="no_grant",
)


def may(roles: frozenset[str], facts: GlassFacts, kind: str = "user") -> bool:
    return why_not_break_the_glass(kind, roles, facts) is None


def test_by_default_the_staff_and_physicians_of_the_same_institution():
    assert SAME.policy == "institution"
    assert may(PHYSICIAN, SAME) and may(STAFF, SAME)
    assert may(frozenset({"department_admin"}), SAME)
    assert not may(PHYSICIAN, OTHER) and not may(STAFF, OTHER)
    assert not may(PHYSICIAN, replace(SAME, caller_institutions=frozenset()))
    assert not may(frozenset(), SAME)
    assert not may(PHYSICIAN, replace(SAME, institution_id=None, caller_institutions=frozenset()))


def test_a_department_may_let_nobody_break_the_glass():
    nobody = replace(SAME, policy="nobody")
    assert not may(PHYSICIAN, nobody) and not may(STAFF, nobody)


def test_or_any_physician_of_the_same_environment():
    env = replace(OTHER, policy="environment")
    assert may(PHYSICIAN, env)
    assert not may(STAFF, env), "physicians only"
    assert not may(PHYSICIAN, replace(env, caller_environment="nl"))
    assert not may(PHYSICIAN, replace(env, environment=None))


@pytest.mark.parametrize("policy", ["institution", "environment"])
def test_never_an_auditor_a_patient_or_a_service(policy):
    facts = replace(SAME, policy=policy)
    assert not may(frozenset({"auditor"}), facts)
    assert not may(frozenset({"auditor", "physician"}), facts)
    assert not may(PHYSICIAN, facts, kind="patient")
    assert not may(PHYSICIAN, facts, kind="service")


@pytest.mark.parametrize("refusal", ["revoked", "locked", "expired", "two_factor_required"])
def test_never_over_a_bucket_the_caller_was_in(refusal):
    facts = replace(SAME, policy="environment", bucket_refusal=refusal)
    assert not may(PHYSICIAN, facts)


def glass(**kw):
    values = dict(
        kind="user",
        roles=("physician",),
        user_id="usr_er",
        study_uid=UID,
        department_id="dep_src",
        reason="unconscious patient",
        current=NO_ACCESS,
        glass=SAME,
        now=NOW,
        duration=timedelta(hours=24),
    )
    values.update(kw)
    return break_the_glass(**values)


def test_an_unknown_study_is_refused_exactly_like_a_refused_caller():
    with pytest.raises(BreakTheGlassNotAllowed) as refused:
        glass(glass=OTHER)
    unknown_decision = replace(NO_ACCESS, refusal="unknown_study")
    with pytest.raises(BreakTheGlassNotAllowed) as unknown:
        glass(glass=GlassFacts(study_known=False), current=unknown_decision, department_id=None)
    assert str(refused.value) == str(unknown.value) == NOT_ALLOWED
    assert glass().valid_until == NOW + timedelta(hours=24)
    with pytest.raises(BreakTheGlassNotNeeded):
        glass(current=replace(NO_ACCESS, images=True, via="grant"))


def test_a_broken_glass_does_not_open_over_a_revoked_bucket():
    subject = Subject(id="usr_er", roles=PHYSICIAN)
    bucket = Bucket(
        bucket_id="bkt_1",
        study_uids=frozenset({UID}),
        recipients=(Recipient("usr_er", "user"),),
        access_level="images_report_read",
        valid_until=NOW + timedelta(days=1),
    )
    facts = AccessFacts(
        now=NOW,
        study=StudyFacts(UID, department_id="dep_src"),
        break_glass_until=NOW + timedelta(hours=1),
    )
    assert decide(subject, UID, facts).via == "break_the_glass"
    assert decide(subject, UID, replace(facts, buckets=(bucket,))).via == "grant"
    for ended in (
        replace(bucket, revoked_recipient_ids=frozenset({"usr_er"})),
        replace(bucket, revoked=True),
        replace(bucket, locked=True),
        replace(bucket, expired=True),
    ):
        d = decide(subject, UID, replace(facts, buckets=(ended,)))
        assert not d.images and d.refusal in ("revoked", "locked", "expired"), d
