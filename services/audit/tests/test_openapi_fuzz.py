"""The documented API holds under fuzzing (schemathesis against the real app and database):
no 5xx, and every response matches its documented status, content type and schema."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pymongo import AsyncMongoClient

from studyshare.audit.entrypoints.api import create_app, start
from studyshare.audit.settings import AuditSettings

TRANSPORT_KEYS = ("method", "url", "params", "headers", "json", "content", "data")


@pytest.fixture
def served(story_db, real_infra, test_tokens, monkeypatch):
    """The app wired to the story's database on a loop of its own (hypothesis tests are sync)."""
    db, _, ids = story_db
    monkeypatch.setenv("STUDYSHARE_KAFKA_BOOTSTRAP", real_infra.kafka_bootstrap)
    monkeypatch.setenv("STUDYSHARE_MONGO_URL", real_infra.mongo_url)
    monkeypatch.setenv("STUDYSHARE_DATABASE", db.name)
    app = create_app()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def wire():
        client = AsyncMongoClient(real_infra.mongo_url, tz_aware=True)
        await start(app, real_infra.settings(AuditSettings, database=db.name), client)
        test_tokens.install(app)
        return client, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://a")

    mongo, http = asyncio.run_coroutine_threadsafe(wire(), loop).result(30)

    def call(kwargs) -> httpx.Response:
        request = {k: v for k, v in kwargs.items() if k in TRANSPORT_KEYS}
        return asyncio.run_coroutine_threadsafe(http.request(**request), loop).result(60)

    yield app, ids, call, test_tokens.user("usr_auditor", "auditor")

    async def close():
        await http.aclose()
        await mongo.close()

    asyncio.run_coroutine_threadsafe(close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)


def test_documented_responses_hold_under_fuzzing(served):
    app, ids, call, headers = served
    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    for op in operations:
        run_operation(op, ids, call, headers, failures)
    assert not failures, "\n".join(failures[:6])


def run_operation(op, ids, call, headers, failures: list[str]) -> None:
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def check(case):
        if case.path_parameters and "uid" in case.path_parameters:
            case.path_parameters["uid"] = ids["uid"]
        kwargs = case.as_transport_kwargs(base_url="http://a", headers=headers)
        response = call(kwargs)
        try:
            case.validate_response(response, transport_kwargs=kwargs)
        except Exception as exc:
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:600]}")

    check()
