"""What identity holds about a patient's reference number, read as its login reads it: a wait
until identity knows a number, so that no login counts an "unknown" failure against it first."""

from __future__ import annotations

from pymongo import AsyncMongoClient

from studyshare.devstack.platform import LocalPlatform
from studyshare.identity.adapters.projections import reference
from studyshare.identity.domain.patient import ReferenceNumberView
from studyshare.identity.settings import IdentitySettings
from studyshare.plumbing.reference_ids import reference_id


async def identity_reference(platform: LocalPlatform, number: str) -> ReferenceNumberView | None:
    """The reference identity's patient login finds for `number` (None: not known yet)."""
    mongo: AsyncMongoClient = AsyncMongoClient(platform.mongo_url)
    try:
        db = mongo[f"{platform.database_prefix}identity"]
        secret = IdentitySettings().reference_number_secret
        return await reference(db, reference_id(number, secret), number)
    finally:
        await mongo.close()
