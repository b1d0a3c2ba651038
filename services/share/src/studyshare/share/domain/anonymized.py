"""Anonymized shares in "shared with me": the study as the study store shows it to the
recipients (PS3.15 Annex E, `studyshare.contracts.anonymized`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from studyshare.contracts.anonymized import bucket_key, remap_uid, shifted


def anonymized_study(
    secret: str, bucket_id: str, study_uid: str, study: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """The study's view with no description and the date shifted for the bucket, and the
    study UID remapped for it."""
    key = bucket_key(secret, bucket_id)
    day = study.get("study_date")
    try:
        shown = shifted(key, date.fromisoformat(day)).isoformat() if day else None
    except ValueError:
        shown = None
    return {**study, "description": None, "study_date": shown}, remap_uid(key, study_uid)
