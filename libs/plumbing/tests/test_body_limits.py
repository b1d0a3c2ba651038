"""Request bodies are bounded per route by the app factory, before they are read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from studyshare.contracts.routes import BODY_LIMITS, DEFAULT_BODY_MAX_BYTES, path_regex
from studyshare.plumbing.bodylimit import BodyLimits
from studyshare.plumbing.http import create_app
from studyshare.plumbing.settings import ServiceSettings

KIB = 1024


class Note(BaseModel):
    text: str


def limited_app(calls: list[str]):
    router = APIRouter()

    @router.post("/notes")
    async def add_note(note: Note) -> dict:
        calls.append("notes")
        return {"length": len(note.text)}

    @router.post("/uploads/{name}")
    async def upload(name: str, request: Request) -> dict:
        calls.append("upload")
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @router.get("/notes")
    async def notes() -> dict:
        return {"notes": []}

    settings = ServiceSettings(environment="test", http_body_max_bytes=16 * KIB)
    return create_app(
        settings,
        title="limits",
        routers=[router],
        body_limits={("POST", "/uploads/{name}"): 256 * KIB},
    )


async def chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // KIB):
        yield b"x" * KIB


async def test_bodies_over_the_route_limit_are_refused_before_the_route_runs():
    calls: list[str] = []
    app = limited_app(calls)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        small = await c.post("/notes", json={"text": "x" * 1000})
        assert small.json() == {"length": 1000}
        big = await c.post("/notes", json={"text": "x" * (20 * KIB)})
        assert big.status_code == 413, big.text
        assert big.headers["content-type"] == "application/problem+json"
        assert big.json()["rule"] == "RequestBodyTooLarge"
        assert "16384 bytes" in big.json()["detail"]
        assert calls == ["notes"], "the route never ran for the large body"

        streamed = await c.post(
            "/notes", content=chunks(64 * KIB), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413 and streamed.json()["rule"] == "RequestBodyTooLarge"

        assert (await c.post("/uploads/a", content=b"y" * (200 * KIB))).json() == {
            "size": 200 * KIB
        }
        assert (await c.post("/uploads/a", content=chunks(200 * KIB))).json() == {"size": 200 * KIB}
        too_big = await c.post("/uploads/a", content=b"y" * (300 * KIB))
        assert too_big.status_code == 413
        cut = await c.post("/uploads/a", content=chunks(300 * KIB))
        assert cut.status_code == 413 and cut.json()["rule"] == "RequestBodyTooLarge"
        assert (await c.get("/notes")).status_code == 200


def test_limits_are_per_method_and_path_template():
    limits = BodyLimits(100, {("POST", "/a/{x}/b"): 1000, ("PUT", "/a"): 50})
    assert limits.limit_for("POST", "/a/1.2.3/b") == 1000
    assert limits.limit_for("POST", "/a/1/2/b") == 100
    assert limits.limit_for("GET", "/a/1/b") == 100
    assert limits.limit_for("PUT", "/a") == 50
    assert limits.limit_for("PUT", "/a/") == 100


def test_the_route_table_names_only_larger_limits():
    assert DEFAULT_BODY_MAX_BYTES <= 64 * KIB, "JSON commands are small"
    assert all(b.max_bytes > DEFAULT_BODY_MAX_BYTES for b in BODY_LIMITS)
    assert path_regex("/api/studies/{study_uid}/report") == "^/api/studies/[^/]+/report$"
