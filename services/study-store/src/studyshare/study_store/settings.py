"""Study store settings."""

from __future__ import annotations

from pathlib import Path

from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.study_store.access_settings import AccessSettings


class StudyStoreSettings(AccessSettings):
    service_name: str = "study-store"
    http_port: int = SERVICE_BY_NAME["study-store"].port
    blob_dir: Path = Path(".run/blobs")
    scp_ae_title: str = "STUDYSHARE"
    scp_port: int = 11112
    scu_ae_title: str = "STUDYSHARE"
