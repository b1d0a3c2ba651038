"""Settings of the devstack processes (gateway, mail catcher), from `STUDYSHARE_*` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from studyshare.contracts.routes import PORTAL, SERVICES

LOCALHOST = "127.0.0.1"


def default_upstreams() -> dict[str, str]:
    """Every service of the route table (and the portal) at its local port."""
    return {s.name: f"http://{LOCALHOST}:{s.port}" for s in (*SERVICES, PORTAL)}


class GatewaySettings(BaseSettings):
    """`STUDYSHARE_UPSTREAMS` is a JSON object `{service name: base URL (http://host:port)}`;
    services missing from it are answered with 503 (not running in this stack)."""

    model_config = SettingsConfigDict(env_prefix="STUDYSHARE_", extra="ignore")

    log_level: str = "INFO"
    log_json: bool = True
    gateway_host: str = LOCALHOST
    gateway_port: int = 8080
    upstreams: dict[str, str] = Field(default_factory=default_upstreams)
    mail_url: str = f"http://{LOCALHOST}:8025"
    extra_routes: dict[str, str] = Field(
        default_factory=dict,
        description="`STUDYSHARE_EXTRA_ROUTES`: JSON `{path prefix: base URL}` routed before the "
        "services (e.g. the benchmarks' baseline app under /bench)",
    )
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 300.0
    max_keepalive_connections: int = Field(
        default=200, ge=1, description="idle keep-alive connections nginx keeps per upstream"
    )
    openapi_cache_s: float = 5.0
    nginx: str | None = Field(
        default=None, description="`STUDYSHARE_NGINX`: the nginx binary (default: PATH, /usr/sbin)"
    )
    gateway_workers: int = Field(default=1, ge=1, description="nginx worker processes")
    gateway_run_dir: Path | None = Field(
        default=None,
        description="where nginx keeps its configuration, pid and temp files (default: a new "
        "temporary directory, removed at exit)",
    )


class MailCatcherSettings(BaseSettings):
    """`STUDYSHARE_SMS_TOKEN`, when set, is the bearer credential the SMS sink requires."""

    model_config = SettingsConfigDict(env_prefix="STUDYSHARE_", extra="ignore")

    log_level: str = "INFO"
    log_json: bool = True
    mail_host: str = LOCALHOST
    mail_smtp_port: int = 1025
    mail_http_port: int = 8025
    mail_keep: int = Field(default=5000, ge=1)
    sms_token: str | None = None
