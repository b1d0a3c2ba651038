"""Every version of every study's report, its content beside it (`reports`)."""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

REPORTS = "reports"


class ReportArchive:
    def __init__(self, db: AsyncDatabase) -> None:
        self.reports = db[REPORTS]

    async def ensure_indexes(self) -> None:
        await self.reports.create_index([("study_uid", 1), ("version", DESCENDING)], name="study")

    async def add(self, doc: dict[str, Any], session: AsyncClientSession | None = None) -> None:
        await self.reports.insert_one(doc, session=session)

    async def version(self, study_uid: str, version: int | None = None) -> dict[str, Any] | None:
        """That version of the study's report (None: the latest), with its content."""
        query: dict[str, Any] = {"study_uid": study_uid}
        if version is not None:
            query["version"] = version
        return await self.reports.find_one(query, sort=[("version", DESCENDING)])

    async def versions(self, study_uid: str) -> list[dict[str, Any]]:
        """Every version of the study's report, the latest first, without content."""
        cursor = self.reports.find(
            {"study_uid": study_uid}, {"content": 0}, sort=[("version", DESCENDING)]
        )
        return await cursor.to_list(None)
