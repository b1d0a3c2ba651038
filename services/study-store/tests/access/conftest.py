from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import DomainEvent
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.contracts.events.study import StudyReceived
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.plumbing.testing import unique
from studyshare.study_store.adapters.projections import AccessDecisions


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Events:
    """Builds envelopes with consecutive versions per aggregate, as their services would."""

    versions: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def __call__(
        self, event: DomainEvent, aggregate_id: str, actor: str = "usr_x"
    ) -> EventEnvelope:
        self.versions[aggregate_id] += 1
        return envelope_for(
            event,
            aggregate_id=aggregate_id,
            aggregate_version=self.versions[aggregate_id],
            actor=Actor(id=actor),
            correlation_id=unique("c"),
        )


def study_received(uid: str, department_id: str = "dep_rad", **kw: Any) -> StudyReceived:
    values: dict[str, Any] = dict(
        study_uid=uid,
        department_id=department_id,
        owner_id=None,
        patient_id="PAT-1",
        patient_initials="J.D.",
        patient_birth_date=date(1970, 5, 17),
        description="CT thorax",
        study_date=date(2026, 11, 1),
        modalities=("CT",),
        series_count=2,
        instance_count=40,
    )
    values.update(kw)
    return StudyReceived(**values)


def study_shared(
    bucket_id: str, uids: list[str], recipients: list[tuple[str, str]], **kw
) -> StudyShared:
    values: dict[str, Any] = dict(
        bucket_id=bucket_id,
        study_uids=tuple(uids),
        recipients=tuple(RecipientRef(recipient_id=r, kind=k) for r, k in recipients),
        sender_id="usr_sender",
        sending_department_id="dep_rad",
        access_level="images_report_read",
        reason="second opinion",
        language="en",
        valid_until=now() + timedelta(days=30),
    )
    values.update(kw)
    return StudyShared(**values)


@dataclass
class Harness:
    app: Any
    http: httpx.AsyncClient
    db: Any
    runner: ProjectionRunner
    tokens: Any
    events: Events

    @property
    def model(self):
        return self.app.state.access_model

    @property
    def store(self):
        return self.app.state.event_store

    async def project(self, *envelopes: EventEnvelope) -> None:
        """What the worker does with these events (same projection, same transaction)."""
        await self.runner.apply_batch(list(envelopes))

    async def publish_own(self, *envelopes: EventEnvelope) -> None:
        """An event of this service: stored in the event store and projected."""
        await self.store.append(list(envelopes))
        await self.project(*envelopes)

    async def sync(self) -> None:
        await self.model.refresh()

    async def study(self, uid: str, **kw: Any) -> None:
        await self.publish_own(self.events(study_received(uid, **kw), uid))
        await self.sync()

    async def share(self, bucket_id: str, uids: list[str], recipients, **kw) -> None:
        await self.project(self.events(study_shared(bucket_id, uids, recipients, **kw), bucket_id))
        await self.sync()

    def user(self, sub: str, *roles: str, **claims) -> dict[str, str]:
        return self.tokens.user(sub, *roles, **claims)


@pytest.fixture
async def harness(real_infra, mongo_db, test_tokens, monkeypatch) -> AsyncIterator[Harness]:
    monkeypatch.setenv("STUDYSHARE_MONGO_URL", real_infra.mongo_url)
    monkeypatch.setenv("STUDYSHARE_DATABASE", mongo_db.name)
    monkeypatch.setenv("STUDYSHARE_KAFKA_BOOTSTRAP", real_infra.kafka_bootstrap)
    monkeypatch.setenv("STUDYSHARE_ENVIRONMENT", "test")
    monkeypatch.setenv("STUDYSHARE_ACCESS_REFRESH_INTERVAL_S", "0.05")
    monkeypatch.setenv("STUDYSHARE_ACCESS_LOG_FLUSH_INTERVAL_S", "0.2")
    from studyshare.study_store.entrypoints.api import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        test_tokens.install(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://study-store") as http:
            yield Harness(
                app,
                http,
                mongo_db,
                ProjectionRunner(
                    AccessDecisions(app.state.settings.anonymization_secret), mongo_db
                ),
                test_tokens,
                Events(),
            )


async def until(check, timeout: float = 5.0, interval: float = 0.01):
    """Poll an async check until it returns something truthy; return (result, seconds)."""
    started = time.monotonic()
    while True:
        result = await check()
        elapsed = time.monotonic() - started
        if result or elapsed > timeout:
            return result, elapsed
        await asyncio.sleep(interval)
