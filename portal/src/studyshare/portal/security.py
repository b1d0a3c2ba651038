"""Browser security of the portal: response headers and the CSRF check of every form.

The CSRF token is per session, sent in a hidden `csrf` field of every form (and by htmx in the
`X-CSRF-Token` header, from `hx-headers` on `<body>`); a POST without the session's token is
refused before it reaches any page.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from urllib.parse import parse_qs

from starlette.requests import Request

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

#: HTTPS only for a year, subdomains too; sent only where the portal is served over HTTPS
STRICT_TRANSPORT_SECURITY = "max-age=31536000; includeSubDomains"


def security_headers(https: bool) -> Mapping[str, str]:
    """The headers of every answer; HSTS only over HTTPS (never a developer's plain http)."""
    if not https:
        return SECURITY_HEADERS
    return {**SECURITY_HEADERS, "Strict-Transport-Security": STRICT_TRANSPORT_SECURITY}


#: pages hold patient data: never kept by a shared cache or the browser's back-forward cache
NO_STORE = "no-store"


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token."""


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form (last value of each field; `multi` fields via `read_form_lists`)."""
    return {k: v[-1] for k, v in (await read_form_lists(request)).items()}


async def read_form_lists(request: Request) -> dict[str, list[str]]:
    cached = getattr(request.state, "form_lists", None)
    if cached is None:
        body = (await request.body()).decode("utf-8", errors="replace")
        cached = parse_qs(body, keep_blank_values=True, max_num_fields=200)
        request.state.form_lists = cached
    return cached


async def check_csrf(request: Request, expected: str) -> None:
    """Raises `CsrfRefused` unless the form field or header carries `expected`."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        sent = (await read_form(request)).get(CSRF_FIELD, "")
    if not sent or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused


def _unsafe_in_a_path(c: str) -> bool:
    """A browser drops TAB, LF and CR from a URL and reads `\\` as `/`, so `/\t/evil.example`
    is `//evil.example`: controls, spaces and backslashes have no place in a local path."""
    return c <= " " or c == "\x7f" or c == "\\"


def safe_next(target: str | None, default: str = "/studies") -> str:
    """A local path to go back to after login; anything else (another site) is the default."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if any(_unsafe_in_a_path(c) for c in target):
        return default
    return target
