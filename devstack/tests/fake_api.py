"""A permissive stand-in for identity and the study store: `python fake_api.py PORT`.

Accepts the demo's calls, checks STOW-RS bodies really are DICOM, and lists what it saw
at `GET /api/auth/_calls`.
"""

from __future__ import annotations

import email
import email.policy
import io
import sys

import pydicom
import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()
calls: list[dict] = []
users: dict[str, dict] = {}


def seen(request: Request, **extra: object) -> None:
    calls.append({"method": request.method, "path": request.url.path, **extra})


@app.get("/api/auth/_calls")
async def list_calls() -> list[dict]:
    return calls


@app.post("/api/auth/login")
async def login(request: Request, response: Response) -> dict:
    body = await request.json()
    seen(request, username=body["username"])
    known = body["username"] == "servicedesk" or body["username"] in users
    if not known:
        response.status_code = 401
        return {"status": 401, "title": "Unauthorized", "detail": "bad credentials"}
    return {"access_token": f"tok-{body['username']}", "refresh_token": "r", "expires_in": 60}


@app.get("/api/users/me")
async def me(request: Request) -> dict:
    name = request.headers["authorization"].removeprefix("Bearer tok-")
    return {"user_id": f"usr_{name}", **users.get(name, {})}


@app.post("/api/departments", status_code=201)
async def department(request: Request) -> dict:
    seen(request, body=await request.json())
    return {"id": "dep_demo"}


@app.post("/api/users", status_code=201)
async def user(request: Request) -> dict:
    body = await request.json()
    seen(request, username=body["username"], roles=body["roles"])
    users[body["username"]] = {"department_ids": body.get("department_ids", [])}
    return {"id": f"usr_{body['username']}"}


@app.post("/api/groups", status_code=201)
async def group(request: Request) -> dict:
    seen(request, body=await request.json())
    return {"id": "grp_demo"}


@app.post("/dicomweb/studies")
async def stow(request: Request) -> dict:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + await request.body(), policy=email.policy.HTTP)
    parts = [part.get_payload(decode=True) for part in message.iter_parts()]
    datasets = [pydicom.dcmread(io.BytesIO(p)) for p in parts]
    seen(request, studies=sorted({d.StudyInstanceUID for d in datasets}), instances=len(parts))
    return {}


#: the study store's answers name a number by its reference id, and give the number itself
#: (for the department's staff) beside it
REVOKED = {
    "reference_id": "a" * 32,
    "reference_number": "REF-REVOKED",
    "usable": False,
    "revoked": True,
}
#: a number the study store cannot open (sealed under another secret): nothing to print
UNOPENED = {"reference_id": "c" * 32, "reference_number": None, "usable": True, "revoked": False}
ISSUED = {"reference_id": "b" * 32, "reference_number": "REF-DEMO-1", "usable": True}


@app.get("/api/studies/{uid}/reference-numbers")
async def references(request: Request, uid: str) -> dict:
    return {"items": [REVOKED, UNOPENED]}


@app.post("/api/studies/{uid}/reference-numbers", status_code=201)
async def new_reference(request: Request, uid: str) -> dict:
    seen(request)
    return {**ISSUED, "study_uid": uid}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
