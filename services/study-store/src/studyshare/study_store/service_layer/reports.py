"""Report commands and queries: versioned text or PDF, each write a `ReportUpdated` event.

The event and the stored content are written in one transaction: a refused or conflicting
write stores nothing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.aggregate import Repository
from studyshare.plumbing.eventstore import EventStore
from studyshare.study_store.domain.exceptions import NoReportYet
from studyshare.study_store.domain.report import (
    ReportFormat,
    StudyReport,
    check_content,
    check_read,
)
from studyshare.study_store.service_layer.access_log import actor_of

REPORTS = "reports"


async def ensure_indexes(db: AsyncDatabase) -> None:
    await db[REPORTS].create_index([("study_uid", 1), ("version", DESCENDING)], name="study")


async def write_report(
    db: AsyncDatabase,
    store: EventStore,
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

    async def work(session: AsyncClientSession | None) -> tuple[dict[str, Any], EventEnvelope]:
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
        await db[REPORTS].insert_one(doc, session=session)
        return doc, event

    return await repo.uow.run(work, retries=retries)


async def read_report(
    db: AsyncDatabase, decision: AccessDecision, version: int | None = None
) -> dict[str, Any]:
    check_read(decision)
    query: dict[str, Any] = {"study_uid": decision.study_uid}
    if version is not None:
        query["version"] = version
    doc = await db[REPORTS].find_one(query, sort=[("version", DESCENDING)])
    if doc is None:
        raise NoReportYet(
            "this study has no report" if version is None else f"no report version {version}"
        )
    return doc


async def report_versions(db: AsyncDatabase, study_uid: str) -> list[dict[str, Any]]:
    cursor = db[REPORTS].find(
        {"study_uid": study_uid}, {"content": 0}, sort=[("version", DESCENDING)]
    )
    return await cursor.to_list(None)


def now() -> datetime:
    return datetime.now(UTC)
