"""Report commands and queries: versioned text or PDF, each write a `ReportUpdated` event.

The event and the stored content (`adapters.report_archive`) are written in one transaction:
a refused or conflicting write stores nothing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.aggregate import Events, Repository
from studyshare.plumbing.unit_of_work import Session
from studyshare.study_store.adapters.report_archive import ReportArchive
from studyshare.study_store.domain.exceptions import NoReportYet
from studyshare.study_store.domain.report import (
    ReportFormat,
    StudyReport,
    check_content,
    check_read,
)
from studyshare.study_store.service_layer.access_log import actor_of


async def write_report(
    archive: ReportArchive,
    store: Events,
    decision: AccessDecision,
    principal: AccessClaims,
    fmt: ReportFormat,
    content: bytes,
    retries: int = 5,
) -> tuple[dict[str, Any], EventEnvelope]:
    """Store a new version of the report; return its stored document and its event."""
    check_content(fmt, content)
    repo = Repository(store, StudyReport)
    actor = actor_of(principal, decision.via)

    async def work(session: Session) -> tuple[dict[str, Any], EventEnvelope]:
        _, envelopes = await repo.execute(
            decision.study_uid,
            lambda report: report.update(decision, principal.sub, fmt),
            actor,
            session=session,
        )
        event = envelopes[0]
        doc = {
            "_id": f"{decision.study_uid}:{event.payload['report_version']}",
            "study_uid": decision.study_uid,
            "version": event.payload["report_version"],
            "format": fmt,
            "content_type": "application/pdf" if fmt == "pdf" else "text/plain",
            "content": content,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "author_id": principal.sub,
            "updated_at": event.occurred_at,
            "event_id": str(event.event_id),
        }
        await archive.add(doc, session=session)
        return doc, event

    return await repo.uow.run(work, retries=retries)


async def read_report(
    archive: ReportArchive, decision: AccessDecision, version: int | None = None
) -> dict[str, Any]:
    check_read(decision)
    doc = await archive.version(decision.study_uid, version)
    if doc is None:
        raise NoReportYet(
            "this study has no report" if version is None else f"no report version {version}"
        )
    return doc


async def report_versions(archive: ReportArchive, study_uid: str) -> list[dict[str, Any]]:
    return await archive.versions(study_uid)


def now() -> datetime:
    return datetime.now(UTC)
