"""Settings of the portal (`STUDYSHARE_*` environment variables)."""

from __future__ import annotations

from pydantic import Field

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
    portal_api_timeout_s: float = Field(default=30.0, gt=0)
    portal_client_secret: str | None = Field(
        default=None,
        description="key vouching for a browser's address to identity (logins are locked per "
        "source: `plumbing.client_address`); the same value as identity's",
    )
    portal_session_idle_s: int = Field(
        default=1800, ge=60, description="a portal session ends after this long without use"
    )
    portal_session_max: int = Field(
        default=100_000, ge=1, description="sessions kept in memory at most (oldest go first)"
    )

    @property
    def secure_cookies(self) -> bool:
        """`Secure` session cookies everywhere but on a developer's machine (plain http)."""
        return self.environment != "development"
