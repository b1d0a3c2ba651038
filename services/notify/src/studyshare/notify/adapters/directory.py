"""Reads of the `directory` read model: people, groups, departments, studies, buckets.

Built by `adapters.projections.DirectoryProjection` from identity, study and share events;
read through the projection's live generation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.notify.domain.views import (
    BucketView,
    DepartmentView,
    GroupView,
    StudyView,
    UserView,
)
from studyshare.plumbing.projection import GenerationPointer

DIRECTORY = "directory"


def _user(doc: dict[str, Any]) -> UserView:
    return UserView(
        id=doc["_id"],
        first_name=doc.get("first_name") or "",
        last_name=doc.get("last_name") or "",
        email=doc.get("email"),
        mobile=doc.get("mobile"),
        language=doc.get("language") or "en",
        roles=tuple(doc.get("roles") or ()),
        admin_of=tuple(doc.get("admin_of") or ()),
        active=doc.get("active", True),
    )


class MongoDirectory:
    def __init__(self, db: AsyncDatabase) -> None:
        self.pointer = GenerationPointer(db, DIRECTORY, cache_s=5.0)

    async def _one(self, collection: str, key: str) -> dict[str, Any] | None:
        return await (await self.pointer.collection(collection)).find_one({"_id": key})

    async def user(self, user_id: str | None) -> UserView | None:
        doc = await self._one("users", user_id) if user_id else None
        return _user(doc) if doc else None

    async def users(self, ids: Iterable[str]) -> dict[str, UserView]:
        col = await self.pointer.collection("users")
        return {d["_id"]: _user(d) async for d in col.find({"_id": {"$in": list(ids)}})}

    async def admins_of(self, department_id: str) -> list[UserView]:
        col = await self.pointer.collection("users")
        return [_user(d) async for d in col.find({"admin_of": department_id, "active": True})]

    async def service_desk(self) -> list[UserView]:
        col = await self.pointer.collection("users")
        return [_user(d) async for d in col.find({"roles": "service_desk", "active": True})]

    async def group(self, group_id: str | None) -> GroupView | None:
        doc = await self._one("groups", group_id) if group_id else None
        if doc is None:
            return None
        return GroupView(
            id=doc["_id"],
            name=doc.get("name") or "",
            email=doc.get("email"),
            member_ids=tuple(doc.get("member_ids") or ()),
            confirmed_until=dict(doc.get("confirmed_until") or {}),
        )

    async def department(self, department_id: str | None) -> DepartmentView | None:
        doc = await self._one("departments", department_id) if department_id else None
        if doc is None:
            return None
        return DepartmentView(id=doc["_id"], name=doc.get("name") or "", email=doc.get("email"))

    async def studies(self, uids: Iterable[str]) -> dict[str, StudyView]:
        col = await self.pointer.collection("studies")
        result = {}
        async for doc in col.find({"_id": {"$in": list(uids)}}):
            result[doc["_id"]] = StudyView(
                uid=doc["_id"],
                patient_initials=doc.get("patient_initials") or "",
                description=doc.get("description") or "",
                study_date=_as_date(doc.get("study_date")),
                department_id=doc.get("department_id"),
            )
        return result

    async def study(self, uid: str) -> StudyView | None:
        return (await self.studies([uid])).get(uid)

    async def bucket(self, bucket_id: str | None) -> BucketView | None:
        doc = await self._one("buckets", bucket_id) if bucket_id else None
        if doc is None:
            return None
        return BucketView(
            id=doc["_id"],
            sender_id=doc.get("sender_id"),
            sending_department_id=doc.get("sending_department_id"),
        )


def _as_date(value: Any):
    from datetime import date, datetime

    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value)
    return value
