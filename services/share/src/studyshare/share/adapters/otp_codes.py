"""The one-time codes of two-factor buckets, kept only as keyed hashes until used, voided by
a newer code or expired (`otp_codes`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.share.adapters.readmodel import OTP_CODES


class OtpCodes:
    def __init__(self, db: AsyncDatabase) -> None:
        self.codes = db[OTP_CODES]

    async def ensure_indexes(self) -> None:
        await self.codes.create_index([("bucket_id", 1), ("user_id", 1), ("mac", 1)])

    async def add(self, code: dict[str, Any]) -> None:
        """Keep a code: `_id`, `bucket_id`, `user_id`, `mac`, `expires_at`."""
        await self.codes.insert_one(code)

    async def remove(self, otp_id: str) -> None:
        await self.codes.delete_one({"_id": otp_id})

    async def void_older(
        self, bucket_id: str, user_id: str, expires_at: datetime, keep: str
    ) -> None:
        """Drop the user's codes for the bucket that `keep` (expiring at `expires_at`) voids."""
        await self.codes.delete_many(
            {
                "bucket_id": bucket_id,
                "user_id": user_id,
                "expires_at": {"$lte": expires_at},
                "_id": {"$ne": keep},
            }
        )

    async def matching(self, bucket_id: str, user_id: str, mac: str) -> str | None:
        """The id of the newest code of the user for the bucket with this keyed hash."""
        found = await self.codes.find_one(
            {"bucket_id": bucket_id, "user_id": user_id, "mac": mac},
            sort=[("expires_at", -1)],
        )
        return found["_id"] if found else None
