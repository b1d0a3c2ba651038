"""In-memory stand-ins of the share service's MongoDB adapters (the directory, the bucket
read model, the codes of two-factor buckets), for handler tests without a database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from studyshare.contracts.envelope import EventEnvelope
from studyshare.share.adapters.readmodel import policy_of, render
from studyshare.share.domain.model import Bucket, DepartmentPolicy

Doc = dict[str, Any]


def _named(user: Doc | None) -> Doc | None:
    if user is None:
        return None
    name = " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p)
    return {**user, "name": name or None}


class InMemoryDirectory:
    """What identity and the study store told the share service: users, groups, departments
    and studies by id."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Doc]] = {
            kind: {} for kind in ("users", "groups", "departments", "studies")
        }

    def put(self, kind: str, _id: str, **fields: Any) -> None:
        self.entries[kind][_id] = {"_id": _id, "active": True, **fields}

    def _many(self, kind: str, ids: list[str]) -> dict[str, Doc]:
        return {i: dict(self.entries[kind][i]) for i in ids if i in self.entries[kind]}

    async def user(self, user_id: str) -> Doc | None:
        return _named(self.entries["users"].get(user_id))

    async def users(self, ids: list[str]) -> dict[str, Doc]:
        return {k: _named(v) for k, v in self._many("users", ids).items()}  # type: ignore[misc]

    async def groups(self, ids: list[str]) -> dict[str, Doc]:
        return self._many("groups", ids)

    async def departments(self, ids: list[str]) -> dict[str, Doc]:
        return self._many("departments", ids)

    async def studies(self, uids: list[str]) -> dict[str, Doc]:
        return self._many("studies", uids)

    async def uploaded_together(self, batch_ids: list[str]) -> list[str]:
        studies = self.entries["studies"].values()
        return [s["_id"] for s in studies if s.get("upload_batch_id") in batch_ids]

    async def groups_of(self, user_id: str) -> list[str]:
        groups = self.entries["groups"].values()
        return [g["_id"] for g in groups if user_id in g.get("member_ids", ())]

    async def opened(self, user_id: str, study_uids: list[str]) -> set[str]:
        return set()

    async def policy(self, department_id: str | None) -> tuple[DepartmentPolicy, str | None]:
        return policy_of(self.entries["departments"].get(department_id or ""))


class InMemoryBucketReadModel:
    """The bucket view, rendered as `BucketReadModel` renders it, kept in a dict."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}

    async def ensure_indexes(self) -> None:
        return None

    async def follow(self, bucket: Bucket, envelopes: list[EventEnvelope], session: Any) -> None:
        if bucket.shared is None:
            return
        if envelopes[0].aggregate_version == 1:
            bucket.shared_at = bucket.shared_at or envelopes[0].occurred_at
        self.docs[bucket.id] = render(bucket)

    async def get(self, bucket_id: str) -> Doc | None:
        return self.docs.get(bucket_id)

    async def children(self, bucket_id: str) -> list[Doc]:
        return [d for d in self.docs.values() if d["parent_bucket_id"] == bucket_id]

    async def reshares_sent_by(self, user_id: str, before: datetime) -> list[Doc]:
        return [
            d
            for d in self.docs.values()
            if d["sender_id"] == user_id
            and d["parent_bucket_id"] is not None
            and not d["revoked"]
            and d["shared_at"] <= before
        ]

    async def held_by(self, keys: list[str], now: datetime) -> list[Doc]:
        return [
            d
            for d in self.docs.values()
            if set(keys) & set(d["active_recipient_ids"])
            and d["status"] == "active"
            and (d["unlimited"] or d["valid_until"] > now)
        ]

    async def due_for_expiry(self, now: datetime) -> list[str]:
        return [
            d["_id"]
            for d in self.docs.values()
            if d["status"] == "active" and not d["unlimited"] and d["valid_until"] <= now
        ]


class InMemoryOtpCodes:
    """The keyed hashes of the codes sent, by id."""

    def __init__(self) -> None:
        self.codes: dict[str, Doc] = {}

    async def ensure_indexes(self) -> None:
        return None

    async def add(self, code: Doc) -> None:
        self.codes[code["_id"]] = code

    async def remove(self, otp_id: str) -> None:
        self.codes.pop(otp_id, None)

    async def void_older(
        self, bucket_id: str, user_id: str, expires_at: datetime, keep: str
    ) -> None:
        for otp_id, c in list(self.codes.items()):
            mine = (c["bucket_id"], c["user_id"]) == (bucket_id, user_id)
            if mine and c["expires_at"] <= expires_at and otp_id != keep:
                del self.codes[otp_id]

    async def matching(self, bucket_id: str, user_id: str, mac: str) -> str | None:
        found = [
            c
            for c in self.codes.values()
            if (c["bucket_id"], c["user_id"], c["mac"]) == (bucket_id, user_id, mac)
        ]
        return max(found, key=lambda c: c["expires_at"])["_id"] if found else None
