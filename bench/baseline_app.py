"""The baselines the benchmarks compare against: the same framework (FastAPI on uvicorn, same
flags as the services) answering a constant, and a plain file response of given bytes.

Served behind the gateway under `/bench`, so both sides of a comparison take the same path.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

CONSTANT = [{"00080020": {"vr": "DA", "Value": ["20260101"]}}]


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bench/constant")
    async def constant() -> JSONResponse:
        return JSONResponse(CONSTANT)

    @app.get("/bench/file")
    async def file() -> FileResponse:
        return FileResponse(os.environ["BENCH_FILE"], media_type="application/dicom")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
