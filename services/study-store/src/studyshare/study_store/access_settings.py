"""Settings of the access half of the study store (mixed into `StudyStoreSettings`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studyshare.plumbing.settings import ServiceSettings


class AccessSettings(ServiceSettings):
    access_refresh_interval_s: float = Field(
        default=0.1, gt=0, description="how often an API process follows the access read model"
    )
    access_cache_docs: int = Field(
        default=50_000,
        ge=100,
        description="read model documents an API process keeps (least recently used dropped; "
        "about 1 KiB each): its memory does not grow with the archive",
    )
    access_cache_lookups: int = Field(
        default=20_000,
        ge=100,
        description="cached lookups (a study's buckets, a user's groups, a study's reference "
        "numbers) an API process keeps",
    )
    access_lease_s: float = Field(
        default=10.0,
        gt=0,
        description="an API process decides only while its last recorded beat in "
        "`access_followers` started less than this ago (else 503 AccessDecisionsUnavailable); "
        "a barrier waits at most this long for a process that stopped answering",
    )
    access_barrier_max_wait_s: float = Field(
        default=12.0,
        gt=0,
        description="the longest a barrier (POST /internal/access/barrier) waits for every "
        "API process to decide on the events it was given",
    )
    access_log_window_s: float = Field(
        default=60.0,
        gt=0,
        description="coalescing window of StudyAccessed (each access is stored before "
        "its answer; a window only sets how many accesses one event stands for)",
    )
    access_log_flush_interval_s: float = Field(default=1.0, gt=0)
    break_glass_hours: float = Field(default=24.0, gt=0, le=168)
    patient_report_default: Literal["none", "read"] = Field(
        default="read",
        description="patient report access when the department policy does not say",
    )
    patient_download_default: bool = False
