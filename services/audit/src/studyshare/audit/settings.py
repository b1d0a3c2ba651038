"""Settings of the audit service (`STUDYSHARE_*` environment variables)."""

from __future__ import annotations

from pydantic import Field

from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.plumbing.settings import ServiceSettings


class AuditSettings(ServiceSettings):
    service_name: str = "audit"
    http_port: int = SERVICE_BY_NAME["audit"].port
    audit_source_id: str = Field(
        default="studyshare-audit", description="AuditSourceID / FHIR observer of the exports"
    )
    burst_threshold: int = Field(default=5, ge=2, description="failures that make a burst")
    burst_window_s: int = Field(default=600, ge=1, description="window of a burst, seconds")
