"""Pincodes the study store sealed to identity: opened here, kept only as an argon2 hash.

The pincode travels in `PincodeSet` sealed to identity's key (no hash of it is ever in the
topic); the worker opens it and stores an argon2 hash in identity's own database, which the
patient login verifies. A v1 event (before sealing) still brings its argon2 hash.
"""

from __future__ import annotations

from collections.abc import Sequence

from studyshare.contracts.events.study import PincodeSet
from studyshare.identity.adapters.passwords import Passwords
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.sealing import open_pincode

log = get_logger(__name__)


class PincodeKeeper:
    """Turns a `PincodeSet` into the argon2 hash identity keeps."""

    def __init__(self, private_keys: Sequence[str], passwords: Passwords) -> None:
        self.private_keys = tuple(private_keys)
        self.passwords = passwords

    async def hash_of(self, event: PincodeSet) -> str | None:
        """The hash to keep; None (no pincode is accepted) when no key of ours opens the box
        or it was sealed for another reference (boxes are bound to the reference id)."""
        if event.sealed_pincode is None:
            return event.legacy_pincode_hash
        pincode = open_pincode(event.sealed_pincode, event.reference_id, self.private_keys)
        if pincode is None:
            log.error("pincode.unopenable", study_uid=event.study_uid)
            return None
        return await self.passwords.hash(pincode)
