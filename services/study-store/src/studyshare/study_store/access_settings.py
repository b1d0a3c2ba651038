"""Settings of the access half of the study store (mixed into `StudyStoreSettings`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from studyshare.plumbing.settings import ServiceSettings


class AccessSettings(ServiceSettings):
    access_refresh_interval_s: float = Field(
        default=0.1, gt=0, description="how often an API process follows the access read model"
    )
    access_max_staleness_s: float = Field(
        default=30.0, gt=0, description="refuse decisions when the model stopped following"
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
