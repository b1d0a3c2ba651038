"""Study store settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from studyshare.contracts.routes import SERVICE_BY_NAME, STOW_MAX_BYTES
from studyshare.plumbing.sealing import DEV_PINCODE_PUBLIC_KEY, check_key, check_not_dev_key
from studyshare.plumbing.settings import refuse_placeholder
from studyshare.study_store.access_settings import AccessSettings


class StudyStoreSettings(AccessSettings):
    service_name: str = "study-store"
    http_port: int = SERVICE_BY_NAME["study-store"].port
    blob_backend: Literal["directory", "gridfs"] = Field(
        default="directory",
        description="where DICOM files live: a directory (`blob_dir`, one machine) or GridFS "
        "in the service's database (shared by every process; Kubernetes)",
    )
    blob_dir: Path = Path(".run/blobs")
    blob_chunk_bytes: int = Field(
        default=255 * 1024,
        ge=16 * 1024,
        le=8 * 1024 * 1024,
        description="GridFS chunk size of new objects (a frame read fetches whole chunks)",
    )
    scp_ae_title: str = "STUDYSHARE"
    scp_port: int = 11112
    scu_ae_title: str = "STUDYSHARE"
    # DICOM half: C-STORE receiver, anonymization, forwarding
    scp_host: str = "127.0.0.1"
    scp_calling_ae_departments: dict[str, str] = Field(
        default_factory=dict,
        description="calling AE title -> sending department id; other AE titles are refused, "
        "and every one while this is empty",
    )
    scp_flush_instances: int = Field(default=200, ge=1)
    scp_recover_after_s: float = Field(
        default=300.0,
        gt=0,
        description="an acknowledged C-STORE object still unindexed after this long (its "
        "receiver died, or failed to index it) is indexed by any receiver's recovery pass",
    )
    scp_tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) of the C-STORE receiver: with it, DICOM over TLS",
    )
    scp_tls_key_file: Path | None = Field(default=None, description="its PEM private key")
    scp_tls_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle: with it, senders must present a certificate it signed",
    )
    stow_max_bytes: int = Field(
        default=STOW_MAX_BYTES,
        ge=1,
        description="the largest STOW-RS request body (the Ingress allows contracts' value)",
    )
    stow_max_parts: int = Field(
        default=20_000,
        ge=1,
        description="the most parts (instances) one STOW-RS request may hold; a larger study "
        "goes in several requests",
    )
    instance_cache_ttl_s: float = Field(
        default=2.0,
        ge=0,
        description="WADO-RS keeps a study's instance documents in memory at most this long",
    )
    anonymization_secret: str = Field(
        default="dev-secret",
        description="HMAC key of anonymized shares (per bucket: patient pseudonym, remapped "
        "UIDs, date shift); the share service needs the same value",
    )
    reference_number_secret: str = Field(
        default="dev-secret",
        description="key of the reference ids patient reference numbers go by, and of the "
        "numbers sealed in `ReferenceNumberIssued` (`studyshare.plumbing.reference_ids`); "
        "identity needs the same value",
    )
    pincode_seal_public_key: str = Field(
        default=DEV_PINCODE_PUBLIC_KEY,
        description="identity's public pincode sealing key: a pincode travels in `PincodeSet` "
        "only sealed with it (identity alone holds the private key)",
    )
    viewer_token_secret: str = Field(
        default="dev-secret",
        description="HMAC key of the viewer tokens the study store issues to the image viewer "
        "(every API process of the service needs the same value; no other service needs it)",
    )
    viewer_token_ttl_s: int = Field(
        default=300,
        ge=30,
        le=3600,
        description="a viewer token lives this long at most (the portal renews it while the "
        "viewer is open), never longer than the access token it was issued for",
    )
    forward_max_attempts: int = Field(default=4, ge=1)
    forward_backoff_s: float = Field(default=2.0, ge=0)
    forward_timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _tls_key_with_certificate(self) -> StudyStoreSettings:
        if (self.scp_tls_cert_file is None) != (self.scp_tls_key_file is None):
            raise ValueError("scp_tls_cert_file and scp_tls_key_file go together")
        if self.scp_tls_ca_file is not None and self.scp_tls_cert_file is None:
            raise ValueError("scp_tls_ca_file needs scp_tls_cert_file")
        return self

    @model_validator(mode="after")
    def _secrets_are_real(self) -> StudyStoreSettings:
        if self.environment == "production":
            refuse_placeholder(self.anonymization_secret, "anonymization_secret", "production")
            refuse_placeholder(self.viewer_token_secret, "viewer_token_secret", "production")
            refuse_placeholder(
                self.reference_number_secret, "reference_number_secret", "production"
            )
        check_key(self.pincode_seal_public_key, "STUDYSHARE_PINCODE_SEAL_PUBLIC_KEY")
        check_not_dev_key(self.pincode_seal_public_key, self.environment, "pincode sealing key")
        return self
