"""Fixtures: the share API in-process on the real database, and a seeded directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events import DomainEvent
from studyshare.contracts.events.identity import (
    DepartmentCreated,
    DepartmentPolicySet,
    GroupCreated,
    UserRegistered,
)
from studyshare.contracts.events.study import StudyReceived
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.share.adapters.projections import Directory
from studyshare.share.entrypoints.api import create_app
from studyshare.share.settings import ShareSettings

STUDY_A, STUDY_B, STUDY_C = "1.2.826.0.1.1", "1.2.826.0.1.2", "1.2.826.0.1.3"


class Clock:
    """A clock tests can move."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ShareEnv:
    client: httpx.AsyncClient
    tokens: Any
    app: Any
    db: Any
    clock: Clock
    _versions: dict[str, int]

    @property
    def service(self):
        return self.app.state.service

    def as_(self, user_id: str, *roles: str, **claims: Any) -> dict[str, str]:
        claims.setdefault("department_ids", DEPARTMENTS.get(user_id, []))
        return self.tokens.user(user_id, *(roles or ("physician",)), **claims)

    async def seed(self, *events: DomainEvent, aggregate_ids: list[str] | None = None) -> None:
        """Feed identity/study events to the directory projection, as the worker would."""
        envelopes = []
        for i, event in enumerate(events):
            aggregate_id = aggregate_ids[i] if aggregate_ids else _aggregate_id(event)
            version = self._versions.get(aggregate_id, 0) + 1
            self._versions[aggregate_id] = version
            envelopes.append(
                envelope_for(
                    event, aggregate_id=aggregate_id, aggregate_version=version, actor=Actor(id="t")
                )
            )
        await ProjectionRunner(Directory(), self.db).apply_batch(envelopes)

    async def events(self, **filters: Any) -> list[dict[str, Any]]:
        return await self.db.events.find(filters).sort("recorded_at", 1).to_list(None)

    async def count(self, **filters: Any) -> int:
        return await self.db.events.count_documents(filters)

    async def share(self, sender: str = "usr_sender", expect: int = 201, **body: Any) -> dict:
        payload = share_body(**body)
        response = await self.client.post("/api/shares", json=payload, headers=self.as_(sender))
        assert response.status_code == expect, response.text
        return response.json()


def _aggregate_id(event: DomainEvent) -> str:
    for field in ("study_uid", "user_id", "group_id", "department_id"):
        if hasattr(event, field):
            return getattr(event, field)
    raise AssertionError(event)


DEPARTMENTS = {"usr_sender": ["dep_1"], "usr_staff2": ["dep_1"]}


def share_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "study_uids": [STUDY_A],
        "recipients": [{"kind": "user", "id": "usr_r1"}],
        "access_level": "images_report_read",
        "reason": "second opinion",
        "patient_agreed": True,
    }
    body.update(overrides)
    return body


def user(user_id: str, language: str = "en", mobile: str | None = "+32470000000", **kw: Any):
    return UserRegistered(
        user_id=user_id,
        username=user_id,
        first_name="Dr",
        last_name=user_id.removeprefix("usr_").title(),
        language=language,
        mobile=mobile,
        **kw,
    )


DIRECTORY = [
    user("usr_sender", "en", department_ids=("dep_1",)),
    user("usr_staff2", "en", department_ids=("dep_1",)),
    user("usr_owner", "en"),
    user("usr_admin", "en", admin_of=("dep_1",)),
    user("usr_r1", "nl"),
    user("usr_r2", "fr"),
    user("usr_r3", "fr"),
    user("usr_nomobile", "en", mobile=None),
    user("usr_g1", "de"),
    user("usr_g2", "de"),
    user("usr_outsider", "en"),
    GroupCreated(
        group_id="grp_1",
        name="Group practice Zuid",
        primary_contact_id="usr_g1",
        member_ids=("usr_g2",),
        created_by="usr_admin",
    ),
    DepartmentCreated(department_id="dep_1", name="Radiology Leuven", created_by="t"),
    DepartmentCreated(department_id="dep_pacs", name="PACS Gent", kind="pacs", created_by="t"),
    StudyReceived(
        study_uid=STUDY_A,
        department_id="dep_1",
        owner_id="usr_owner",
        upload_batch_id="batch_cd",
        patient_initials="J.D.",
        description="CT thorax",
    ),
    StudyReceived(
        study_uid=STUDY_B,
        department_id="dep_1",
        owner_id="usr_owner",
        upload_batch_id="batch_cd",
        patient_initials="J.D.",
        description="CT abdomen",
    ),
    StudyReceived(
        study_uid=STUDY_C, department_id="dep_1", owner_id="usr_owner", description="MR knee"
    ),
]


def policy(**kw: Any) -> DepartmentPolicySet:
    return DepartmentPolicySet(department_id=kw.pop("department_id", "dep_1"), set_by="t", **kw)


@pytest.fixture
async def env(real_infra, mongo_db, test_tokens) -> AsyncIterator[ShareEnv]:
    settings = real_infra.settings(
        ShareSettings, database=mongo_db.name, expiry_interval_seconds=3600
    )
    app = create_app(settings)
    clock = Clock()
    async with app.router.lifespan_context(app):
        test_tokens.install(app)
        app.state.service.clock = clock
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://share") as client:
            e = ShareEnv(client, test_tokens, app, mongo_db, clock, {})
            await e.seed(*DIRECTORY)
            yield e
