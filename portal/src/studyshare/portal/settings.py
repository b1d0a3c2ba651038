"""Settings of the portal (`STUDYSHARE_*` environment variables)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from studyshare.contracts.routes import PORTAL
from studyshare.plumbing.settings import ServiceSettings


class PortalSettings(ServiceSettings):
    service_name: str = "portal"
    http_port: int = PORTAL.port
    # The portal verifies no token itself (the services do): no revocation feed to follow.
    session_revocation_feed: bool = False
    portal_api_url: str = Field(
        default="http://127.0.0.1:8080",
        description="base URL of the public API (the gateway, or the Ingress in Kubernetes)",
    )
    portal_api_host: str | None = Field(
        default=None,
        description="the public host name the gateway answers HTTPS for, when "
        "`portal_api_url` is its in-cluster address (sent as Host and TLS server name)",
    )
    portal_api_timeout_s: float = Field(default=30.0, gt=0)
    portal_client_secret: str | None = Field(
        default=None,
        description="key vouching for a browser's address to identity (logins are locked per "
        "source: `plumbing.client_address`); the same value as identity's",
    )
    portal_trusted_proxies: int = Field(
        default=1,
        ge=0,
        description="proxies in front of the portal that append to X-Forwarded-For (the "
        "gateway): the browser is the entry the outermost of them appended, as for identity",
    )
    portal_time_zone: str = Field(
        default="Europe/Brussels",
        description="the time zone pages show times in and forms take them in (the API's "
        "are UTC); an IANA name",
    )
    portal_session_idle_s: int = Field(
        default=1800, ge=60, description="a portal session ends after this long without use"
    )
    portal_session_max: int = Field(
        default=100_000,
        ge=1,
        description="sessions kept in memory at most, logged-in and anonymous ones counted apart "
        "(the least recently used go first)",
    )

    @field_validator("portal_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"no time zone {value!r} in the time zone database") from None
        return value

    @property
    def secure_cookies(self) -> bool:
        """`Secure` session cookies everywhere but on a developer's machine (plain http)."""
        return self.environment != "development"
