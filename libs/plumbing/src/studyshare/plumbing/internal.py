"""Service-to-service calls: the internal routes (`/internal/...`) and who may call them.

Internal routes are never routed by the gateway or the Ingress (their paths match no public
prefix, `studyshare.contracts.routes.INTERNAL_ROUTES`), are left out of the OpenAPI document,
and admit only the services named for them. A calling service sends its own credential
(`STUDYSHARE_INTERNAL_TOKEN`) with its name; the called service compares it with the one it
was given for that caller (`STUDYSHARE_INTERNAL_CALLERS`, JSON `{service: token}`). So a
service can only act as itself, like its Kafka user. In development and tests every service
has the credential `dev-internal-<service>` unless told otherwise; production refuses those.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import httpx
from fastapi import Depends, Request
from pydantic import SecretStr

from studyshare.plumbing.errors import Unauthorized
from studyshare.plumbing.logging import current_correlation_id

CALLER_HEADER = "studyshare-caller"
DEV_PREFIX = "dev-internal-"


class InternalCallerNotAdmitted(Unauthorized):
    """An internal route was called without the credential of a service it admits."""


def dev_token(service: str) -> str:
    return f"{DEV_PREFIX}{service}"


def own_token(environment: str, service: str, configured: SecretStr | None) -> str:
    """This service's credential for calling others; refused in production unless real."""
    token = configured.get_secret_value() if configured is not None else None
    if environment == "production" and (not token or token.startswith(DEV_PREFIX)):
        raise ValueError("production requires STUDYSHARE_INTERNAL_TOKEN (a real secret)")
    return token or dev_token(service)


def caller_token(environment: str, callers: Mapping[str, SecretStr], caller: str) -> str | None:
    """The credential `caller` must present; None when it is not known here."""
    configured = callers.get(caller)
    if configured is not None:
        token = configured.get_secret_value()
        if environment == "production" and token.startswith(DEV_PREFIX):
            return None
        return token
    return None if environment == "production" else dev_token(caller)


def check_caller(
    environment: str,
    callers: Mapping[str, SecretStr],
    admitted: tuple[str, ...],
    caller: str | None,
    authorization: str | None,
) -> str:
    """The caller's name when it presents its credential and is admitted; else refuse."""
    scheme, _, presented = (authorization or "").partition(" ")
    if not caller or caller not in admitted or scheme.lower() != "bearer" or not presented:
        raise InternalCallerNotAdmitted("this internal route admits only named services")
    expected = caller_token(environment, callers, caller)
    if expected is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise InternalCallerNotAdmitted("this internal route admits only named services")
    return caller


def internal_caller(*admitted: str) -> Any:
    """A route dependency admitting the services `admitted`; it gives the caller's name."""

    async def check(request: Request) -> str:
        settings = request.app.state.settings
        return check_caller(
            settings.environment,
            settings.internal_callers,
            admitted,
            request.headers.get(CALLER_HEADER),
            request.headers.get("authorization"),
        )

    return Depends(check)


class InternalClient:
    """Calls another service's internal routes as this service (one pooled HTTP client)."""

    def __init__(
        self,
        base_url: str,
        caller: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.caller = caller
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            trust_env=False,
            transport=transport,
            headers={CALLER_HEADER: caller, "authorization": f"Bearer {token}"},
        )

    @classmethod
    def for_settings(cls, settings: Any, base_url: str, **kwargs: Any) -> InternalClient:
        token = own_token(settings.environment, settings.service_name, settings.internal_token)
        return cls(base_url, settings.service_name, token, **kwargs)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"x-correlation-id": current_correlation_id(), **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def close(self) -> None:
        await self.http.aclose()
