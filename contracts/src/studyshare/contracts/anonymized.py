"""What a recipient of an anonymized share sees instead of a study's UIDs and dates.

Both the study store (which serves the study) and the share service (whose "shared with me"
lists it) show the same: values derived from the anonymization secret
(`STUDYSHARE_ANONYMIZATION_SECRET`, the same in both services) and the bucket id. One bucket,
one key; two buckets share no UID, date offset or pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, timedelta

#: the longest shift of dates, in days (a share's dates move 1..MAX_SHIFT_DAYS days back)
MAX_SHIFT_DAYS = 3650


def bucket_key(secret: str, bucket_id: str) -> bytes:
    """The key of one anonymized share: every pseudonym, UID and date shift derives from it."""
    return hmac.new(secret.encode(), f"bucket\x00{bucket_id}".encode(), hashlib.sha256).digest()


def keyed(key: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def remap_uid(key: bytes, uid: str) -> str:
    """`2.25.<int>`: the same UID maps to the same value within one share, to unrelated values
    in two shares (128 bits, as a UUID-derived UID)."""
    return f"2.25.{int.from_bytes(keyed(key, 'uid', uid.strip())[:16], 'big')}"


def shift_days(key: bytes) -> int:
    return int.from_bytes(keyed(key, "date", "")[:4], "big") % MAX_SHIFT_DAYS + 1


def shifted(key: bytes, day: date) -> date:
    return day - timedelta(days=shift_days(key))
