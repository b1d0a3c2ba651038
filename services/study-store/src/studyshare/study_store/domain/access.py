"""The access decision: what a principal may do with one study, and why.

Owned by the access-decision part of the study store; the DICOMweb, download and report routes
only consume `AccessDecision` through `entrypoints.dependencies`.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    reference_number: str | None = None
    anonymous_number: str | None = None

    @property
    def allowed(self) -> bool:
        return self.images
