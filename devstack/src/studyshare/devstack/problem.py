"""RFC 9457 problem+json bodies (the gateway's own; nginx's are in `nginxconf`)."""

from __future__ import annotations

import json
from typing import Any

PROBLEM = b"application/problem+json"


def problem_body(status: int, title: str, detail: str, **extra: Any) -> bytes:
    body: dict[str, Any] = {"type": "about:blank", "status": status, "title": title}
    body["detail"] = detail
    body.update(extra)
    return json.dumps(body).encode()
