"""RFC 9457 problem+json responses written straight to ASGI (no framework on the hot path)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

PROBLEM = b"application/problem+json"


def problem_body(status: int, title: str, detail: str, **extra: Any) -> bytes:
    body: dict[str, Any] = {"type": "about:blank", "status": status, "title": title}
    body["detail"] = detail
    body.update(extra)
    return json.dumps(body).encode()


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    **extra: Any,
) -> None:
    body = problem_body(status, title, detail, **extra)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
