"""The audit API's use cases (`service_layer.queries`) over an in-memory log: who may read
what, and that every read is recorded before it is answered; no database, no broker (issue
18, point 2). The API tests drive the same use cases over MongoDB."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from studyshare.audit.adapters.store import LogFilter
from studyshare.audit.domain import rules
from studyshare.audit.domain.entries import build_entry
from studyshare.audit.service_layer.queries import AuditQueries
from studyshare.audit.settings import AuditSettings
from studyshare.contracts.events import share, study
from studyshare.contracts.events.share import RecipientRef
from studyshare.contracts.tokens import AccessClaims

from .scenario import Story

Doc = dict[str, Any]
UID = "1.2.826.0.1.99"


class InMemoryAuditLog:
    """The log entries of a story (`domain.entries.build_entry`), its studies and the reads
    recorded (`adapters.store.AuditStore`, as far as these use cases ask)."""

    def __init__(self, story: Story) -> None:
        self.entries = [build_entry(e) for e in story.events]
        self.studies = {
            e.payload["study_uid"]: {"_id": e.payload["study_uid"], **e.payload}
            for e in story.events
            if e.event_type == "StudyReceived"
        }
        self.read_log: list[Doc] = []

    async def record_read(self, *, study_uid: str | None, **read: Any) -> Doc:
        self.read_log.append({"study_uid": study_uid, **read})
        return self.read_log[-1]

    async def study(self, uid: str) -> Doc | None:
        return self.studies.get(uid)

    async def study_entries(self, uid: str) -> list[Doc]:
        return [e for e in self.entries if uid in e["study_uids"]]

    async def studies_of_departments(self, departments: Iterable[str]) -> list[str]:
        wanted = set(departments)
        return [uid for uid, s in self.studies.items() if s["department_id"] in wanted]

    async def page(self, f: LogFilter, offset: int, limit: int) -> tuple[list[Doc], int]:
        found = [e for e in self.entries if set(e["study_uids"]) & set(f.study_uids or ())]
        return found[offset : offset + limit], len(found)

    async def groups_of_people(self, user_ids: Iterable[str]) -> set[str]:
        return set()

    async def directory_entries(self, groups: Iterable[str], departments: Iterable[str]):
        return []

    async def people_entries(self, user_ids: Iterable[str]) -> list[Doc]:
        return []

    async def department_policies(self, department_ids: Sequence[str]) -> list[Doc]:
        return []


def who(sub: str, *roles: str, admin_of: tuple[str, ...] = ()) -> AccessClaims:
    now = int(time.time())
    return AccessClaims(sub=sub, roles=roles, admin_of=admin_of, iat=now, exp=now + 60)


AUDITOR = who("usr_auditor", "auditor")
ADMIN = who("usr_admin", "department_admin", admin_of=("dep_rad",))
OTHER_ADMIN = who("usr_admin2", "department_admin", admin_of=("dep_er",))


@pytest.fixture
def log() -> InMemoryAuditLog:
    story = Story()
    story.add(study.StudyReceived(study_uid=UID, department_id="dep_rad", patient_id="PAT-1"), UID)
    story.add(
        share.StudyShared(
            bucket_id="bkt_1",
            study_uids=(UID,),
            recipients=(RecipientRef(recipient_id="usr_r1", kind="user"),),
            sender_id="usr_sender",
            sending_department_id="dep_rad",
            access_level="images_report_read",
            reason="second opinion",
            language="en",
            unlimited=True,
        ),
        "bkt_1",
        "usr_sender",
    )
    return InMemoryAuditLog(story)


@pytest.fixture
def queries(log: InMemoryAuditLog) -> AuditQueries:
    return AuditQueries(log, AuditSettings())  # type: ignore[arg-type]


async def test_a_read_of_a_study_log_is_recorded_before_it_is_answered(
    log: InMemoryAuditLog, queries: AuditQueries
) -> None:
    entries, total = await queries.study_log(ADMIN, UID, LogFilter(), 0, 50)
    assert total == 2
    assert [e["event_type"] for e in entries] == ["StudyReceived", "StudyShared"]
    [read] = log.read_log
    assert (read["actor_id"], read["study_uid"]) == ("usr_admin", UID)
    assert read["route"] == f"/api/audit/studies/{UID}/log"


async def test_refused_readers_leave_no_read_behind(
    log: InMemoryAuditLog, queries: AuditQueries
) -> None:
    with pytest.raises(rules.AuditLogReadersOnly):
        await queries.study_log(who("usr_r1", "physician"), UID, LogFilter(), 0, 50)
    with pytest.raises(rules.StudyNotInAuditLog):
        await queries.study_log(OTHER_ADMIN, UID, LogFilter(), 0, 50)
    with pytest.raises(rules.StudyNotInAuditLog):
        await queries.study_log(AUDITOR, "1.2.3.unknown", LogFilter(), 0, 50)
    with pytest.raises(rules.ChainCheckForOperatorsOnly):
        await queries.verify(ADMIN)
    assert log.read_log == []


async def test_an_admin_reads_the_log_of_their_departments_studies_only(
    log: InMemoryAuditLog, queries: AuditQueries
) -> None:
    _, mine = await queries.log(ADMIN, LogFilter(), 0, 50)
    _, theirs = await queries.log(OTHER_ADMIN, LogFilter(), 0, 50)
    assert (mine, theirs) == (2, 0)
    assert [r["route"] for r in log.read_log] == ["/api/audit/log", "/api/audit/log"]


async def test_who_could_open_a_study_at_a_time(
    log: InMemoryAuditLog, queries: AuditQueries
) -> None:
    shared_at = log.entries[1]["occurred_at"]
    before = await queries.access_at(AUDITOR, UID, log.entries[0]["occurred_at"])
    after = await queries.access_at(AUDITOR, UID, shared_at)
    assert before["events_considered"] == 1 and after["events_considered"] == 2

    def principals(answer: Doc) -> set[tuple[str, str]]:
        return {(r["principal_kind"], r["principal_id"]) for r in answer["could_open"]}

    assert ("user", "usr_r1") not in principals(before)
    assert ("user", "usr_r1") in principals(after)
    assert ("department", "dep_rad") in principals(before)
    assert [r["route"] for r in log.read_log] == [f"/api/audit/studies/{UID}/access-at"] * 2
