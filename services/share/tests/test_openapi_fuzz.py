"""The documented API holds under fuzzing (schemathesis against the real app and database):
no 5xx, and every response matches its documented status, content type and schema."""

from __future__ import annotations

import asyncio
import threading
import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pymongo import AsyncMongoClient

from studyshare.contracts.envelope import Actor
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.share.entrypoints.api import create_app
from studyshare.share.entrypoints.projections import Directory
from studyshare.share.settings import ShareSettings

from .conftest import DIRECTORY, _aggregate_id, share_body

TRANSPORT_KEYS = ("method", "url", "params", "headers", "json", "content", "data")


@pytest.fixture
def served(real_infra, test_tokens):
    """The app on a loop of its own (hypothesis tests are sync), with one bucket to aim at."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    settings_ = real_infra.settings(ShareSettings, database=name, expiry_interval_seconds=3600)
    app = create_app(settings_)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    lifespan = app.router.lifespan_context(app)
    headers = test_tokens.user("usr_sender", "physician", department_ids=["dep_1"])

    async def wire():
        await lifespan.__aenter__()
        test_tokens.install(app)
        client = AsyncMongoClient(real_infra.mongo_url, tz_aware=True)
        envelopes, versions = [], {}
        for event in DIRECTORY:
            aid = _aggregate_id(event)
            versions[aid] = versions.get(aid, 0) + 1
            envelopes.append(
                envelope_for(
                    event, aggregate_id=aid, aggregate_version=versions[aid], actor=Actor(id="t")
                )
            )
        await ProjectionRunner(Directory(), client[name]).apply_batch(envelopes)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://a")
        made = await http.post("/api/shares", json=share_body(two_factor=True), headers=headers)
        assert made.status_code == 201, made.text
        return client, http, made.json()["bucket_id"]

    mongo, http, bucket_id = asyncio.run_coroutine_threadsafe(wire(), loop).result(60)

    def call(kwargs) -> httpx.Response:
        request = {k: v for k, v in kwargs.items() if k in TRANSPORT_KEYS}
        return asyncio.run_coroutine_threadsafe(http.request(**request), loop).result(60)

    yield app, bucket_id, call, headers

    async def close():
        await http.aclose()
        await lifespan.__aexit__(None, None, None)
        await mongo.drop_database(name)
        await mongo.close()

    asyncio.run_coroutine_threadsafe(close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)


def test_documented_responses_hold_under_fuzzing(served):
    app, bucket_id, call, headers = served
    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for op in operations:
        run_operation(op, bucket_id, call, headers, failures)
    assert not failures, "\n".join(failures[:6])


def run_operation(op, bucket_id, call, headers, failures: list[str]) -> None:
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def check(case):
        if case.path_parameters and "bucket_id" in case.path_parameters:
            case.path_parameters["bucket_id"] = bucket_id
        kwargs = case.as_transport_kwargs(base_url="http://a", headers=headers)
        response = call(kwargs)
        try:
            # a schema-valid body may still break a domain rule (422 with its `rule`)
            case.validate_response(
                response,
                transport_kwargs=kwargs,
                excluded_checks=[schemathesis.checks.positive_data_acceptance],
            )
        except Exception as exc:
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:600]}")

    check()
