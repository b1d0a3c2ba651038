"""The documented API holds under fuzzing (schemathesis against the real app and database):
no 5xx, and every response matches its documented status, content type and schema."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from pymongo import AsyncMongoClient

from studyshare.audit.entrypoints.api import create_app, start
from studyshare.audit.settings import AuditSettings
from studyshare.plumbing.testing import LoopThread, fuzz_operation


@pytest.fixture
def served(story_db, real_infra, test_tokens, monkeypatch):
    """The app wired to the story's database on a loop of its own (hypothesis tests are sync)."""
    db, _, ids = story_db
    monkeypatch.setenv("STUDYSHARE_KAFKA_BOOTSTRAP", real_infra.kafka_bootstrap)
    monkeypatch.setenv("STUDYSHARE_MONGO_URL", real_infra.mongo_url)
    monkeypatch.setenv("STUDYSHARE_DATABASE", db.name)
    app = create_app()
    loop = LoopThread()

    async def wire():
        client = AsyncMongoClient(real_infra.mongo_url, tz_aware=True)
        await start(app, real_infra.settings(AuditSettings, database=db.name), client)
        test_tokens.install(app)
        return client, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://a")

    mongo, http = loop.run(wire(), 30)

    yield app, ids, loop.caller(http), test_tokens.user("usr_auditor", "auditor")

    async def close():
        await http.aclose()
        await mongo.close()

    loop.run(close(), 30)
    loop.stop()


def test_documented_responses_hold_under_fuzzing(served):
    app, ids, call, headers = served
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9

    def aim(case):
        if case.path_parameters and "uid" in case.path_parameters:
            case.path_parameters["uid"] = ids["uid"]

    failures: list[str] = []
    for op in operations:
        failures += fuzz_operation(op, call, headers, aim=aim, max_examples=12)
    assert not failures, "\n".join(failures[:6])
