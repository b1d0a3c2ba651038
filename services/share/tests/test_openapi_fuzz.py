"""The documented API holds under fuzzing (schemathesis against the real app and database):
no 5xx, and every response matches its documented status, content type and schema."""

from __future__ import annotations

import uuid

import httpx
import pytest
import schemathesis
from pymongo import AsyncMongoClient

from studyshare.contracts.envelope import Actor
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.plumbing.testing import LoopThread, fuzz_operation
from studyshare.share.adapters.projections import Directory
from studyshare.share.entrypoints.api import create_app
from studyshare.share.settings import ShareSettings

from .conftest import DIRECTORY, _aggregate_id, share_body


@pytest.fixture
def served(real_infra, test_tokens):
    """The app on a loop of its own (hypothesis tests are sync), with one bucket to aim at."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    settings_ = real_infra.settings(ShareSettings, database=name, expiry_interval_seconds=3600)
    app = create_app(settings_)
    loop = LoopThread()
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

    mongo, http, bucket_id = loop.run(wire())

    yield app, bucket_id, loop.caller(http), headers

    async def close():
        await http.aclose()
        await lifespan.__aexit__(None, None, None)
        await mongo.drop_database(name)
        await mongo.close()

    loop.run(close(), 30)
    loop.stop()


def test_documented_responses_hold_under_fuzzing(served):
    app, bucket_id, call, headers = served
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    def aim(case):
        if case.path_parameters and "bucket_id" in case.path_parameters:
            case.path_parameters["bucket_id"] = bucket_id

    failures: list[str] = []
    for op in operations:
        failures += fuzz_operation(
            op,
            call,
            headers,
            aim=aim,
            max_examples=10,
            # a schema-valid body may still break a domain rule (422 with its `rule`)
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )
    assert not failures, "\n".join(failures[:6])
