"""A small real upstream for the gateway tests: `python upstream_app.py NAME PORT`.

Built on the plumbing app factory, so it answers like a service (correlation ids,
problem+json, /healthz, /readyz, /metrics, /openapi.json).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

import uvicorn
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, create_model

from studyshare.contracts.routes import STOW_MAX_BYTES
from studyshare.plumbing.http import create_app
from studyshare.plumbing.settings import ServiceSettings

PREFIX = {"identity": "/api/auth", "share": "/api/shares", "audit": "/api/audit"}


class Echo(BaseModel):
    service: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_bytes: int
    body_sha256: str


def build(name: str):
    router = APIRouter()
    prefix = PREFIX[name]

    @router.api_route(f"{prefix}/echo/{{rest:path}}", methods=["GET", "POST", "PUT", "DELETE"])
    async def echo(request: Request, rest: str) -> Echo:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return Echo(
            service=name,
            method=request.method,
            path=request.scope["raw_path"].decode(),
            query=request.url.query,
            headers=dict(request.headers),
            body_bytes=size,
            body_sha256=digest.hexdigest(),
        )

    @router.get(f"{prefix}/slow")
    async def slow(seconds: float = 2.0) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @router.get(f"{prefix}/stream")
    async def stream(chunks: int = 64, size: int = 65536) -> StreamingResponse:
        async def body():
            for i in range(chunks):
                yield bytes([i % 256]) * size

        return StreamingResponse(body(), media_type="application/octet-stream")

    thing_type = str if name == "identity" else int
    Thing = create_model("Thing", value=(thing_type, ...))  # same name, different shapes

    @router.get(f"{prefix}/thing", response_model=Thing)
    async def thing() -> dict:
        return {"value": "x" if name == "identity" else 1}

    # a stand-in for a service, without a broker: no identity events to follow; it takes
    # uploads as large as STOW-RS does, so the gateway's streaming is what the tests measure
    settings = ServiceSettings(
        service_name=name,
        environment="test",
        session_revocation_feed=False,
        http_body_max_bytes=STOW_MAX_BYTES,
    )
    return create_app(settings, title=name, routers=[router])


if __name__ == "__main__":
    service, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(build(service), host="127.0.0.1", port=port, log_level="warning")
