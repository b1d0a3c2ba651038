"""Fixtures of the audit tests: the story applied to a real database, the real app."""

from __future__ import annotations

import httpx
import pytest

from studyshare.audit.entrypoints.api import create_app
from studyshare.audit.service_layer.rebuild import rebuild_from_envelopes

from .scenario import full_story


@pytest.fixture
async def story_db(mongo_db):
    """The full story applied by the audit projection, live generation switched to it."""
    story, ids = full_story()
    await rebuild_from_envelopes(mongo_db, story.events, batch_size=7, switch=True)
    return mongo_db, story, ids


@pytest.fixture
async def api(story_db, real_infra, test_tokens, monkeypatch):
    """The real app (lifespan run) against the story's database, trusting test tokens."""
    db, story, ids = story_db
    monkeypatch.setenv("STUDYSHARE_MONGO_URL", real_infra.mongo_url)
    monkeypatch.setenv("STUDYSHARE_KAFKA_BOOTSTRAP", real_infra.kafka_bootstrap)
    monkeypatch.setenv("STUDYSHARE_DATABASE", db.name)
    monkeypatch.setenv("STUDYSHARE_ENVIRONMENT", "test")
    app = create_app()
    async with app.router.lifespan_context(app):
        test_tokens.install(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://audit"
        ) as client:
            yield client, story, ids, db
