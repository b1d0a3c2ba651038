"""Settings shared by every service, read from `STUDYSHARE_*` environment variables."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from studyshare.contracts.routes import DEFAULT_BODY_MAX_BYTES

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev-secret"}


class ServiceSettings(BaseSettings):
    """Validated at start-up; a service subclasses it and sets `service_name`."""

    model_config = SettingsConfigDict(env_prefix="STUDYSHARE_", extra="ignore")

    service_name: str = "studyshare"
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_json: bool = True

    mongo_url: str = "mongodb://127.0.0.1:27017/?retryWrites=false&directConnection=true"
    database: str | None = None

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_enable_idempotence: bool = False
    kafka_session_timeout_ms: int = 10_000
    kafka_rebalance_timeout_ms: int = 10_000

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_keep_alive_s: int = Field(
        default=75,
        ge=1,
        description="how long an idle keep-alive connection stays open; longer than the idle "
        "time of the proxy in front (gateway 30 s, ingress-nginx 60 s), so that the proxy, not "
        "the service, closes it and never sends a request into a connection being closed",
    )
    http_body_max_bytes: int = Field(
        default=DEFAULT_BODY_MAX_BYTES,
        ge=1024,
        description="the largest request body a route takes unless it has its own limit "
        "(studyshare.contracts.routes.BODY_LIMITS); larger ones get 413 before they are read",
    )
    public_base_url: str = "http://127.0.0.1:8080"

    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    jwks_cache_seconds: int = 300
    session_revocation_feed: bool = Field(
        default=True,
        description="follow identity.events in the API process and refuse access tokens of "
        "ended sessions (logout, refresh-token reuse) and accounts (deactivated, password reset)",
    )
    session_revocation_keep_s: int = Field(
        default=3600,
        ge=60,
        description="how long an ended session is remembered: at least the longest access "
        "token lifetime identity issues (users 900 s, patients 3600 s)",
    )

    otp_seal_public_key: str = Field(
        default="Fi3sEQTJ/M5ku/UX0rPry+wsvaVxPmr8SiXlIExAXi0=",
        description="notify's public key; one-time codes in events are sealed with it",
    )

    relay_batch_size: int = Field(default=2000, ge=1)
    relay_settle_ms: int = Field(default=250, ge=0)
    relay_idle_poll_ms: int = Field(default=50, ge=1)
    consumer_batch_size: int = Field(default=200, ge=1)
    consumer_batch_within_s: float = Field(default=0.05, gt=0)
    # faust's own scratch directory (its table stores are in memory): not the working tree.
    worker_data_dir: Path = Path(tempfile.gettempdir()) / "studyshare-worker"

    @property
    def database_name(self) -> str:
        return self.database or f"studyshare_{self.service_name.replace('-', '_')}"

    @model_validator(mode="after")
    def _production_is_strict(self) -> ServiceSettings:
        if self.environment == "production" and not self.kafka_enable_idempotence:
            raise ValueError("production requires STUDYSHARE_KAFKA_ENABLE_IDEMPOTENCE=true")
        from studyshare.plumbing.sealing import check_not_dev_key

        check_not_dev_key(self.otp_seal_public_key, self.environment)
        return self


def refuse_placeholder(value: str, name: str, environment: str) -> str:
    """Secrets may be placeholders in development only."""
    if environment != "development" and value.strip().lower() in PLACEHOLDER_SECRETS:
        raise ValueError(f"{name} must be set to a real secret outside development")
    return value
