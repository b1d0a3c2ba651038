"""The access decision: what a principal may do with one study, and why.

Made by `rules.decide`; the study store's DICOMweb, download and report routes only consume
it (through their route dependency).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ReportAccess = Literal["none", "read", "write"]


@dataclass(frozen=True)
class AccessDecision:
    study_uid: str
    images: bool
    report: ReportAccess
    download: bool
    anonymized: bool
    via: str | None
    reason: str
    bucket_id: str | None = None
    group_id: str | None = None
    reference_id: str | None = None
    anonymous_number: str | None = None
    valid_until: datetime | None = None
    """When this access ends by itself (None: unlimited or not time-bound)."""
    refusal: str | None = None
    """Why images may not be seen: a stable code (`rules.Refusal`), else None."""
    two_factor_bucket_id: str | None = None
    """A two-factor bucket the caller may unlock with an OTP (set with `two_factor_required`)."""

    @property
    def allowed(self) -> bool:
        return self.images
