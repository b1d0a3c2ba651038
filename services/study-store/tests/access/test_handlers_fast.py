"""The study store's commands (reference numbers, break the glass, reports) over the in-memory
event store (`plumbing.fakes`) and an access model fed in memory: no database, no broker (issue 18,
point 2). The route tests drive the same commands over MongoDB."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.events.identity import (
    DepartmentCreated,
    DepartmentPolicySet,
    ReferenceNumberRule,
)
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.fakes import InMemoryEventStore
from studyshare.plumbing.reference_ids import reference_id
from studyshare.plumbing.sealing import generate_keypair, open_pincode
from studyshare.study_store.adapters.access_documents import InMemoryAccessDocuments
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.domain import exceptions
from studyshare.study_store.service_layer import reference_numbers, reports
from studyshare.study_store.service_layer.break_glass import break_glass

from .conftest import Events, study_received

STUDY = "1.2.826.0.1.7"
SECRET = "reference-number-secret"
PRIVATE, PUBLIC = generate_keypair()


class InMemoryReportArchive:
    """The report versions (`adapters.report_archive.ReportArchive`) in a list."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    async def add(self, doc: dict[str, Any], session: Any = None) -> None:
        self.docs.append(doc)

    async def version(self, study_uid: str, version: int | None = None) -> dict[str, Any] | None:
        found = [
            d for d in self.docs if d["study_uid"] == study_uid and version in (None, d["version"])
        ]
        return max(found, key=lambda d: d["version"], default=None)

    async def versions(self, study_uid: str) -> list[dict[str, Any]]:
        found = [d for d in self.docs if d["study_uid"] == study_uid]
        return sorted(found, key=lambda d: -d["version"])


class Store:
    """An event store, the access model it feeds and the report archive, all in memory."""

    def __init__(self) -> None:
        self.store = InMemoryEventStore()
        self.archive = InMemoryReportArchive()
        self.model = AccessModel(InMemoryAccessDocuments(), reference_number_secret=SECRET)
        self.model.lease.renew(time.monotonic())  # as a successful read of its model would
        events = Events()
        self.received = events(study_received(STUDY, "dep_rad"), STUDY)
        self.model.apply_local(
            [
                events(
                    DepartmentCreated(
                        department_id="dep_rad", name="Rx", created_by="t", institution_id="ins_1"
                    ),
                    "dep_rad",
                ),
                events(
                    DepartmentCreated(
                        department_id="dep_er", name="ER", created_by="t", institution_id="ins_1"
                    ),
                    "dep_er",
                ),
                self.received,
            ]
        )

    def policy(self, **policy) -> None:
        self.model.apply_local(
            [Events()(DepartmentPolicySet(department_id="dep_rad", set_by="t", **policy), "d")]
        )

    def of(self, event_type: str) -> list[dict]:
        return [e.payload for e in self.store.events_of(event_type)]


def who(sub: str, *roles: str, departments: tuple[str, ...] = ()) -> AccessClaims:
    now = int(time.time())
    return AccessClaims(sub=sub, roles=roles, department_ids=departments, iat=now, exp=now + 60)


STAFF = who("usr_staff", "department_staff", departments=("dep_rad",))


@pytest.fixture
async def s() -> Store:
    store = Store()
    await store.store.append([store.received])  # the study's stream, as ingest began it
    return store


async def issue(s: Store, **given: Any) -> tuple[str, str]:
    """Issue a number: its id, and the number as the Access tab shows it."""
    ref_id = await reference_numbers.issue(s.store, s.model, STAFF, STUDY, secret=SECRET, **given)
    number = s.model.number_of(await s.model.reference(ref_id) or {})
    assert number is not None
    return ref_id, number


async def test_a_number_is_issued_per_the_department_rule(s: Store) -> None:
    s.policy(reference_number_rule=ReferenceNumberRule(length=12, alphabet="digits"))
    ref_id, number = await issue(s)
    assert len(number) == 12 and number.isdigit()
    assert ref_id == reference_id(number, SECRET)
    [issued] = s.of("ReferenceNumberIssued")
    assert (issued["study_uid"], issued["complies_with_rule"]) == (STUDY, True)
    assert [r["reference_id"] for r in await s.model.references_of(STUDY)] == [ref_id]


async def test_the_number_travels_only_sealed(s: Store) -> None:
    """A reference number opens the study with a date of birth: no event, stream id or read
    model document carries it in clear, and a wrong secret opens nothing."""
    ref_id, number = await issue(s, reference_number="kx5wkjxc32")
    assert number == "KX5WKJXC32", "numbers are kept in capitals, as patients read them"
    await reference_numbers.set_pincode(s.store, s.model, STAFF, STUDY, ref_id, "4321", PUBLIC)
    await reference_numbers.revoke(s.store, s.model, STAFF, STUDY, ref_id)
    stored = [e for stream in s.store.streams.values() for e in stream]
    assert len(stored) == 4 and {e.aggregate_id for e in stored[1:]} == {f"ref_{ref_id}"}
    assert number not in "".join(e.model_dump_json() for e in stored)
    assert number not in str(await s.model.references_of(STUDY))
    [doc] = await s.model.references_of(STUDY)
    assert (
        AccessModel(InMemoryAccessDocuments(), reference_number_secret="other").number_of(doc)
        is None
    )


async def test_a_taken_number_is_refused_and_others_may_not_manage(s: Store) -> None:
    await issue(s, reference_number="ABCDEFGHJK")
    with pytest.raises(exceptions.ReferenceNumberTaken):
        await issue(s, reference_number="abcdefghjk")
    # the department's physician sees the study, and the ER's staff (same institution) may
    # break the glass on it: both are told who manages its numbers
    for told in (
        who("usr_phys", "physician", departments=("dep_rad",)),
        who("usr_er", "department_staff", departments=("dep_er",)),
    ):
        with pytest.raises(exceptions.ReferenceNumbersManagedByStudyDepartmentOnly):
            await reference_numbers.issue(s.store, s.model, told, STUDY, secret=SECRET)
    outsider = who("usr_far", "department_staff", departments=("dep_far",))
    with pytest.raises(exceptions.StudyNotFound):  # no way in: not told the study exists
        await reference_numbers.issue(s.store, s.model, outsider, STUDY, secret=SECRET)
    with pytest.raises(exceptions.StudyNotFound):
        await reference_numbers.issue(s.store, s.model, STAFF, "1.2.3.unknown", secret=SECRET)
    assert len(s.of("ReferenceNumberIssued")) == 1


async def test_a_revoked_number_is_revoked_once(s: Store) -> None:
    ref_id, _ = await issue(s)
    await reference_numbers.revoke(s.store, s.model, STAFF, STUDY, ref_id)
    assert [e["reference_id"] for e in s.of("ReferenceNumberRevoked")] == [ref_id]
    assert (await s.model.references_of(STUDY))[0]["revoked"]
    with pytest.raises(exceptions.ReferenceNumberAlreadyRevoked):
        await reference_numbers.revoke(s.store, s.model, STAFF, STUDY, ref_id)


async def test_numbers_below_a_stricter_rule_are_replaced(s: Store) -> None:
    weak, _ = await issue(s, reference_number="ABCDEFGHJK")
    s.policy(reference_number_rule=ReferenceNumberRule(length=14))
    [strong] = await reference_numbers.regenerate(s.store, s.model, STAFF, STUDY, secret=SECRET)
    assert len(s.model.number_of(await s.model.reference(strong) or {}) or "") == 14
    assert [e["reference_id"] for e in s.of("ReferenceNumberRevoked")] == [weak]
    again = await reference_numbers.regenerate(s.store, s.model, STAFF, STUDY, secret=SECRET)
    assert again == []


async def test_the_pincode_travels_sealed_to_identity(s: Store) -> None:
    ref_id, _ = await issue(s)
    await reference_numbers.set_pincode(s.store, s.model, STAFF, STUDY, ref_id, "4321", PUBLIC)
    [pincode] = s.of("PincodeSet")
    assert "4321" not in str(pincode)
    assert open_pincode(pincode["sealed_pincode"], ref_id, [PRIVATE]) == "4321"


async def test_breaking_the_glass_is_allowed_to_the_institution_and_recorded(s: Store) -> None:
    physician = who("usr_er", "physician", departments=("dep_er",))
    with pytest.raises(exceptions.BreakTheGlassReasonRequired):
        await break_glass(s.store, s.model, physician, STUDY, " ", timedelta(hours=1))
    envelope = await break_glass(
        s.store, s.model, physician, STUDY, "patient unconscious", timedelta(hours=1)
    )
    assert envelope.event_type == "BreakTheGlassUsed"
    assert (await s.model.decide(physician, STUDY)).via == "break_the_glass"
    s.policy(break_the_glass="nobody")
    with pytest.raises(exceptions.BreakTheGlassNotAllowed):
        await break_glass(s.store, s.model, physician, STUDY, "again", timedelta(hours=1))
    assert len(s.of("BreakTheGlassUsed")) == 1


def may_write(report: str = "write", anonymized: bool = False) -> AccessDecision:
    return AccessDecision(
        study_uid=STUDY,
        images=True,
        report=report,  # type: ignore[arg-type]
        download=False,
        anonymized=anonymized,
        via="department",
        reason="",
    )


async def test_each_report_write_is_a_new_version(s: Store) -> None:
    archive = s.archive
    await reports.write_report(archive, s.store, may_write(), STAFF, "text", b"no fracture")
    doc, event = await reports.write_report(
        archive, s.store, may_write(), STAFF, "pdf", b"%PDF-1.7 ..."
    )
    assert (doc["version"], event.payload["report_version"]) == (2, 2)
    assert [e["format"] for e in s.of("ReportUpdated")] == ["text", "pdf"]
    latest = await reports.read_report(archive, may_write("read"))
    assert (latest["version"], latest["content_type"]) == (2, "application/pdf")
    first = await reports.read_report(archive, may_write("read"), version=1)
    assert first["content"] == b"no fracture"


async def test_a_refused_report_stores_nothing(s: Store) -> None:
    with pytest.raises(exceptions.ReportNotAPdf):
        await reports.write_report(s.archive, s.store, may_write(), STAFF, "pdf", b"hello")
    with pytest.raises(exceptions.ReportEmpty):
        await reports.write_report(s.archive, s.store, may_write(), STAFF, "text", b"  ")
    with pytest.raises(exceptions.ReportWriteNotAllowed):
        await reports.write_report(s.archive, s.store, may_write("read"), STAFF, "text", b"x")
    with pytest.raises(exceptions.ReportNotAvailableOnAnonymizedShare):
        await reports.write_report(
            s.archive, s.store, may_write(anonymized=True), STAFF, "text", b"x"
        )
    assert s.of("ReportUpdated") == [] and s.archive.docs == []
    assert len(s.store.committed) == 1, "the study's arrival only"
    with pytest.raises(exceptions.NoReportYet):
        await reports.read_report(s.archive, may_write("read"))
