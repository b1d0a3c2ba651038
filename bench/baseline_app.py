"""The access decision's baseline: the same framework (FastAPI on uvicorn, same flags as the
services) answering a constant. (Files are served by nginx: `bench/nginx.py`.)

Served behind the gateway under `/bench`, so both sides of a comparison take the same path.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

CONSTANT = [{"00080020": {"vr": "DA", "Value": ["20260101"]}}]


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bench/constant")
    async def constant() -> JSONResponse:
        return JSONResponse(CONSTANT)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
