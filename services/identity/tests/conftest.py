from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from studyshare.identity.entrypoints.api import create_app, start_identity
from studyshare.identity.service_layer.context import Identity
from studyshare.identity.settings import IdentitySettings
from studyshare.plumbing.auth import JWKSVerifier

DESK = ("desk", "desk-password-1")


@dataclass
class Api:
    client: httpx.AsyncClient
    identity: Identity
    app: FastAPI

    async def login(self, username: str, password: str, **extra: Any) -> httpx.Response:
        return await self.client.post(
            "/api/auth/login", json={"username": username, "password": password, **extra}
        )

    async def headers(self, username: str, password: str, **extra: Any) -> dict[str, str]:
        response = await self.login(username, password, **extra)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def desk(self) -> dict[str, str]:
        return await self.headers(*DESK)

    async def register(self, headers: dict[str, str], **body: Any) -> str:
        body.setdefault("password", "a-long-password-1")
        body.setdefault("first_name", "Jan")
        body.setdefault("last_name", "Peeters")
        response = await self.client.post("/api/users", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    async def events(self, event_type: str | None = None) -> list:
        found = await self.identity.store.all_events()
        return [e for e in found if event_type is None or e.event_type == event_type]

    async def verify(self, token: str):
        jwks = (await self.client.get("/.well-known/jwks.json")).json()
        return await JWKSVerifier.from_jwks(jwks).verify(token)


def identity_settings(real_infra, mongo_db, **overrides: Any) -> IdentitySettings:
    values: dict[str, Any] = {
        "database": mongo_db.name,
        "bootstrap_user": DESK[0],
        "bootstrap_password": DESK[1],
        "argon2_time_cost": 1,
        "argon2_memory_kib": 64,
    }
    values.update(overrides)
    return real_infra.settings(IdentitySettings, **values)


@pytest.fixture
async def make_api(real_infra, mongo_db):
    clients: list[httpx.AsyncClient] = []

    async def make(**overrides: Any) -> Api:
        settings = identity_settings(real_infra, mongo_db, **overrides)
        app = create_app(settings)
        identity = await start_identity(app, mongo_db, settings)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://identity")
        clients.append(client)
        return Api(client, identity, app)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def api(make_api) -> Api:
    return await make_api()


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now
