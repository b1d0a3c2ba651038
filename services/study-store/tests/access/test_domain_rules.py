"""Pure rules of reference numbers, break-the-glass and the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from studyshare.access_policy.decision import AccessDecision
from studyshare.access_policy.glass import (
    GlassFacts,
)
from studyshare.contracts.events.identity import ReferenceNumberRule
from studyshare.contracts.events.study import ReferenceNumberIssued, ReferenceNumberShape
from studyshare.study_store.domain.break_glass import (
    BreakTheGlassNotAllowed,
    BreakTheGlassNotNeeded,
    BreakTheGlassReasonRequired,
    break_the_glass,
)
from studyshare.study_store.domain.reference_numbers import (
    ReferenceNumber,
    ReferenceNumberAlreadyRevoked,
    ReferenceNumberBreaksComplexityRule,
    ReferenceNumbersManagedByStudyDepartmentOnly,
    ReferenceNumberTaken,
    ReferenceNumberUnknown,
    ReferenceNumberValidityInverted,
    check_may_manage,
    complies,
    generate,
)
from studyshare.study_store.domain.report import (
    ReportEmpty,
    ReportNotAPdf,
    ReportNotAvailableOnAnonymizedShare,
    ReportReadNotAllowed,
    ReportWriteNotAllowed,
    StudyNotReceived,
    StudyReport,
    check_content,
    check_read,
)

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
SHAPE = ReferenceNumberShape.of("AB12CD34EF")


def decision(**kw) -> AccessDecision:
    values = dict(
        study_uid="1.2",
        images=True,
        report="write",
        download=False,
        anonymized=False,
        via="grant",
        reason="test",
    )
    values.update(kw)
    return AccessDecision(**values)


@pytest.mark.parametrize("alphabet", ["digits", "alphanumeric"])
@pytest.mark.parametrize("length", [6, 10, 16])
def test_generated_reference_numbers_comply_with_the_department_rule(alphabet, length):
    rule = ReferenceNumberRule(length=length, alphabet=alphabet)
    numbers = {generate(rule) for _ in range(50)}
    assert len(numbers) == 50, "random, not repeated"
    for n in numbers:
        assert len(n) == length and complies(ReferenceNumberShape.of(n), rule)
        if alphabet == "digits":
            assert n.isdigit()


def test_complexity_rule_flags_short_or_too_simple_numbers():
    strict = ReferenceNumberRule(length=10, alphabet="alphanumeric")
    assert not complies(ReferenceNumberShape.of("AB12"), strict), "too short"
    assert not complies(ReferenceNumberShape.of("1234567890"), strict), (
        "digits only is weaker than alphanumeric"
    )
    assert not complies(ReferenceNumberShape.of("ABCDEFGHJK"), strict), "letters only"
    assert not complies(ReferenceNumberShape.of("AB12-CD34EF"), strict), "not alphanumeric"
    assert complies(ReferenceNumberShape.of("AB12CD34EF"), strict)
    assert not complies(
        ReferenceNumberShape.of("12345ABCDE"), ReferenceNumberRule(length=10, alphabet="digits")
    )


def test_issue_flags_a_number_that_breaks_the_rule_and_refuses_its_pincode():
    ref = ReferenceNumber("ref_id1234")
    [event] = ref.issue(
        study_uid="1.2",
        rule=ReferenceNumberRule(),
        department_id="dep_1",
        issued_by="usr_s",
        number="1234",
        sealed_number="sealed-1234",
    )
    assert event.complies_with_rule is False
    assert (event.reference_id, event.sealed_number) == ("id1234", "sealed-1234")
    ref.apply(event)
    with pytest.raises(ReferenceNumberBreaksComplexityRule):
        ref.set_pincode("1.2", "sealed-pincode", "usr_s")
    with pytest.raises(ReferenceNumberTaken):
        ref.issue(
            study_uid="1.2",
            rule=ReferenceNumberRule(),
            department_id=None,
            issued_by="x",
            number="1234",
            sealed_number="sealed-1234",
        )


def test_revoke_once_and_only_for_its_study():
    ref = ReferenceNumber("ref_AB12CD34EF")
    ref.apply(ReferenceNumberIssued(reference_id="AB12CD34EF", number_shape=SHAPE, study_uid="1.2"))
    with pytest.raises(ReferenceNumberUnknown):
        ref.revoke("9.9", "usr_s")
    [revoked] = ref.revoke("1.2", "usr_s")
    ref.apply(revoked)
    with pytest.raises(ReferenceNumberAlreadyRevoked):
        ref.revoke("1.2", "usr_s")
    with pytest.raises(ReferenceNumberAlreadyRevoked):
        ref.set_pincode("1.2", "sealed-pincode", "usr_s")


def test_reference_number_validity_must_not_be_inverted():
    with pytest.raises(ReferenceNumberValidityInverted):
        ReferenceNumber("ref_AB12CD34EF").issue(
            study_uid="1.2",
            rule=ReferenceNumberRule(),
            department_id=None,
            issued_by="x",
            number="AB12CD34EF",
            sealed_number="sealed",
            valid_from=NOW,
            valid_to=NOW - timedelta(days=1),
        )


def test_only_study_department_staff_or_service_desk_manage_reference_numbers():
    assert check_may_manage(("service_desk",), (), (), "dep_1") == "service_desk"
    assert check_may_manage(("department_staff",), ("dep_1",), (), "dep_1") == "department_staff"
    assert check_may_manage(("department_admin",), (), ("dep_1",), "dep_1") == "department_admin"
    for roles, deps in [(("physician",), ("dep_1",)), (("department_staff",), ("dep_2",))]:
        with pytest.raises(ReferenceNumbersManagedByStudyDepartmentOnly):
            check_may_manage(roles, deps, (), "dep_1")


def btg(**kw):
    values = dict(
        kind="user",
        roles=("physician",),
        user_id="usr_1",
        study_uid="1.2",
        department_id="dep_1",
        reason="patient on ER, unconscious",
        current=decision(images=False, via=None, report="none"),
        glass=GlassFacts(
            study_known=True, policy="environment", environment="be", caller_environment="be"
        ),
        now=NOW,
        duration=timedelta(hours=24),
    )
    values.update(kw)
    return break_the_glass(**values)


def test_break_the_glass_requires_a_reason_and_lasts_limited_time():
    event = btg()
    assert event.valid_until == NOW + timedelta(hours=24) and event.reason
    for reason in ("", "   "):
        with pytest.raises(BreakTheGlassReasonRequired):
            btg(reason=reason)


def test_break_the_glass_not_for_patients_auditors_or_users_with_access():
    with pytest.raises(BreakTheGlassNotAllowed):
        btg(kind="patient")
    with pytest.raises(BreakTheGlassNotAllowed):
        btg(roles=("auditor",))
    with pytest.raises(BreakTheGlassNotNeeded):
        btg(current=decision(via="grant"))


def test_report_read_and_write_follow_the_decision():
    check_read(decision(report="read"))
    with pytest.raises(ReportReadNotAllowed):
        check_read(decision(report="none"))
    with pytest.raises(ReportNotAvailableOnAnonymizedShare):
        check_read(decision(report="read", anonymized=True))
    report = StudyReport("1.2")
    with pytest.raises(StudyNotReceived):
        report.update(decision(), "usr_1", "text")
    report.received = True
    with pytest.raises(ReportWriteNotAllowed):
        report.update(decision(report="read"), "usr_1", "text")
    [event] = report.update(decision(), "usr_1", "pdf")
    assert event.report_version == 1 and event.author_id == "usr_1" and event.format == "pdf"


def test_report_content_is_checked():
    with pytest.raises(ReportEmpty):
        check_content("text", b"  ")
    with pytest.raises(ReportNotAPdf):
        check_content("pdf", b"hello")
    check_content("pdf", b"%PDF-1.4 ...")
