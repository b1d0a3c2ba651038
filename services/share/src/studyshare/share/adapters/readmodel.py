"""Mongo read models: the bucket view (written with every bucket event, in its transaction)
and the directory (facts from identity and the study store, built by the worker)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events.share import ShareOptions
from studyshare.plumbing.mongo import find_in
from studyshare.plumbing.projection import GenerationPointer
from studyshare.share.adapters.projections import DIRECTORY
from studyshare.share.domain.model import (
    Bucket,
    DepartmentPolicy,
    department_time_zone,
)

BUCKETS = "buckets_view"
#: what every view of a bucket shows of its parameters (`share_options`)
SHOWN_OPTIONS = (*ShareOptions.model_fields, "report_access")
OTP_CODES = "otp_codes"


def effective_report_access(bucket: Bucket) -> str:
    """What the recipient may do with the report: an anonymized share never opens it."""
    if bucket.anonymize or bucket.access_level == "images":
        return "none"
    return "read" if bucket.access_level == "images_report_read" else "write"


def share_options(bucket: Bucket) -> dict[str, Any]:
    """What the sender chose for this share (`ShareOptions`, as decided), as every view of the
    bucket and the confirmation show it, with the report access it amounts to."""
    s = bucket.s
    return {name: getattr(s, name) for name in ShareOptions.model_fields} | {
        "label": s.label.model_dump() if s.label else None,
        "report_access": effective_report_access(bucket),
    }


def render(bucket: Bucket) -> dict[str, Any]:
    s = bucket.s
    return {
        "_id": bucket.id,
        "version": bucket.version,
        "sender_id": s.sender_id,
        "sending_department_id": s.sending_department_id,
        "parent_bucket_id": s.parent_bucket_id,
        "study_uids": list(s.study_uids),
        "active_study_uids": bucket.active_study_uids,
        "recipients": [
            {
                **r.model_dump(),
                "revoked": r.recipient_id in bucket.revoked_recipients,
                "user_id": bucket.accepted.get(r.recipient_id),
            }
            for r in s.recipients
        ],
        # who holds it: the active recipients and the accounts that accepted an invitation
        "active_recipient_ids": sorted(bucket.holder_ids),
        "reason": s.reason,  # for the sender, owner and admins only; never for recipients
        **share_options(bucket),
        "status": bucket.status,
        "revoked": bucket.revoked,
        "expired": bucket.expired,
        "locked": bucket.locked,
        "shared_at": bucket.shared_at,
    }


class BucketReadModel:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.buckets = db[BUCKETS]

    async def ensure_indexes(self) -> None:
        await self.buckets.create_index(
            [("active_recipient_ids", ASCENDING), ("shared_at", DESCENDING)]
        )
        await self.buckets.create_index("study_uids")
        await self.buckets.create_index("parent_bucket_id")
        await self.buckets.create_index("sender_id")
        await self.buckets.create_index([("status", ASCENDING), ("valid_until", ASCENDING)])

    async def follow(
        self, bucket: Bucket, envelopes: list[EventEnvelope], session: AsyncClientSession | None
    ) -> None:
        """Render the bucket after its new events, in their transaction (the one writer)."""
        if bucket.shared is None:
            return
        if envelopes[0].aggregate_version == 1:  # a new bucket: shared when first stored
            bucket.shared_at = bucket.shared_at or envelopes[0].occurred_at
            await self.buckets.insert_one(render(bucket), session=session)
        else:
            await self.buckets.replace_one({"_id": bucket.id}, render(bucket), session=session)

    async def get(self, bucket_id: str) -> dict[str, Any] | None:
        return await self.buckets.find_one({"_id": bucket_id})

    async def children(self, bucket_id: str) -> list[dict[str, Any]]:
        return await self.buckets.find({"parent_bucket_id": bucket_id}).to_list(None)

    async def reshares_sent_by(self, user_id: str, before: datetime) -> list[dict[str, Any]]:
        """The user's re-shares (buckets with a parent) shared before `before`, not revoked."""
        cursor = self.buckets.find(
            {
                "sender_id": user_id,
                "parent_bucket_id": {"$ne": None},
                "revoked": False,
                "shared_at": {"$lte": before},
            }
        )
        return await cursor.to_list(None)

    async def sent_by(
        self,
        user_id: str,
        limit: int,
        offset: int,
        *,
        status: str | None = None,
        locked: bool | None = None,
    ) -> tuple[list[dict], int]:
        """A page of the buckets the user sent (in that state, locked or not), the latest
        first, and how many there are."""
        query: dict[str, Any] = {"sender_id": user_id}
        return await self._page(query, limit, offset, status=status, locked=locked)

    async def locked_of(
        self, department_ids: list[str] | None, limit: int, offset: int
    ) -> tuple[list[dict], int]:
        """A page of the locked buckets sent from these departments (None: every one)."""
        query: dict[str, Any] = {}
        if department_ids is not None:
            query["sending_department_id"] = {"$in": department_ids}
        return await self._page(query, limit, offset, locked=True)

    async def _page(
        self,
        query: dict[str, Any],
        limit: int,
        offset: int,
        *,
        status: str | None = None,
        locked: bool | None = None,
    ) -> tuple[list[dict], int]:
        if status is not None:
            query["status"] = status
        if locked is not None:
            query["locked"] = locked
        total = await self.buckets.count_documents(query)
        cursor = (
            self.buckets.find(query)
            .sort([("shared_at", DESCENDING), ("_id", DESCENDING)])  # a stable page order
            .skip(offset)
            .limit(limit)
        )
        return await cursor.to_list(None), total

    async def of_study(self, study_uid: str) -> list[dict[str, Any]]:
        cursor = self.buckets.find({"study_uids": study_uid}).sort("shared_at", ASCENDING)
        return await cursor.to_list(None)

    async def held_by(self, keys: list[str], now: datetime) -> list[dict[str, Any]]:
        """Active, unexpired buckets of which one of `keys` is an active recipient, the latest
        first. The query names the indexed recipients only and the expiry is checked here: a
        planner given the `$or` of unlimited or still valid scans the whole collection
        (SecantusDB does: 4.4 s at 100,000 buckets for a recipient of one, 8 ms without)."""
        cursor = self.buckets.find(
            {"active_recipient_ids": {"$in": keys}, "status": "active"}
        ).sort("shared_at", DESCENDING)
        return [d async for d in cursor if d["unlimited"] or d["valid_until"] > now]

    async def due_for_expiry(self, now: datetime) -> list[str]:
        """Active buckets past `valid_until`, by the (status, valid_until) index. An unlimited
        bucket has no `valid_until` (the domain refuses both), so `$lte` never matches it;
        naming `unlimited` too made SecantusDB scan the whole collection (42 s at 10^6
        buckets, each round of the expiry loop; 5 ms without)."""
        cursor = self.buckets.find({"status": "active", "valid_until": {"$lte": now}}, {"_id": 1})
        return [doc["_id"] async for doc in cursor]


def _named(user: dict[str, Any] | None) -> Any:
    """Adds the display name ("first last")."""
    if user is not None:
        parts = (user.get("first_name"), user.get("last_name"))
        user["name"] = " ".join(p for p in parts if p) or None
    return user


class DirectoryReader:
    """Reads the worker's directory projection (users, groups, departments, studies)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.pointer = GenerationPointer(db, DIRECTORY)

    async def _one(self, collection: str, _id: str) -> dict[str, Any] | None:
        return await (await self.pointer.collection(collection)).find_one({"_id": _id})

    async def _many(self, collection: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        found = find_in(await self.pointer.collection(collection), "_id", ids)
        return {doc["_id"]: doc async for doc in found}

    async def user(self, user_id: str) -> dict[str, Any] | None:
        return _named(await self._one("users", user_id))

    async def users(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {k: _named(v) for k, v in (await self._many("users", ids)).items()}

    async def groups(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return await self._many("groups", ids)

    async def departments(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return await self._many("departments", ids)

    async def studies(self, uids: list[str]) -> dict[str, dict[str, Any]]:
        return await self._many("studies", uids)

    async def uploaded_together(self, batch_ids: list[str]) -> list[str]:
        if not batch_ids:
            return []
        studies = await self.pointer.collection("studies")
        return [d["_id"] async for d in find_in(studies, "upload_batch_id", batch_ids, {"_id": 1})]

    async def groups_of(self, user_id: str) -> list[str]:
        cursor = (await self.pointer.collection("groups")).find({"member_ids": user_id}, {"_id": 1})
        return [doc["_id"] async for doc in cursor]

    async def opened(self, user_id: str, study_uids: list[str]) -> set[str]:
        """Which of these studies the user has opened."""
        return {uid for _, uid in await self.opened_by({(user_id, uid) for uid in study_uids})}

    async def opened_by(self, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (user, study) pairs the user has opened."""
        if not pairs:
            return set()
        ids = [f"{user_id}|{uid}" for user_id, uid in sorted(pairs)]
        found = find_in(await self.pointer.collection("opened"), "_id", ids)
        return {(doc["user_id"], doc["study_uid"]) async for doc in found}

    async def policy(self, department_id: str | None) -> tuple[DepartmentPolicy, str | None]:
        """The department's policy (documented defaults when it set none) and its country."""
        return policy_of(await self._one("departments", department_id) if department_id else None)


def policy_of(department: dict[str, Any] | None) -> tuple[DepartmentPolicy, str | None]:
    """A department's policy (documented defaults when it set none) and its country."""
    policy = (department or {}).get("policy") or {}
    country = (department or {}).get("country")
    return (
        DepartmentPolicy(
            # no policy: the manuals' one month; a policy set before months existed: its days
            default_validity_days=(
                policy.get("default_validity_days")
                if policy.get("default_validity_months") is None
                else None
            ),
            default_validity_months=policy.get("default_validity_months"),
            time_zone=department_time_zone(policy.get("time_zone"), country),
            max_validity_days=policy.get("max_validity_days"),
            unlimited_allowed=policy.get("unlimited_allowed", True),
            hipaa_confirmation_required=bool(policy.get("hipaa_confirmation_required"))
            or country == "us",
        ),
        country,
    )
