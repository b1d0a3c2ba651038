"""The real worker (`python -m studyshare.share worker`) against the real broker: it builds the
directory from identity/study events."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import UserRegistered
from studyshare.contracts.events.study import StudyReceived
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import GenerationPointer
from studyshare.plumbing.testing import publish_events, stop_processes, unique


async def eventually(check, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def publish(real_infra, db, events) -> None:
    """Store events in a database's outbox and relay them to Kafka, as their service would."""
    await publish_events(real_infra, events, db)


@pytest.fixture
def worker(real_infra, mongo_db, tmp_path):
    log = open(tmp_path / "worker.log", "wb")
    env = {
        **os.environ,
        "STUDYSHARE_SERVICE_NAME": unique("share"),
        "STUDYSHARE_DATABASE": mongo_db.name,
        "STUDYSHARE_KAFKA_BOOTSTRAP": real_infra.kafka_bootstrap,
        "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
        "STUDYSHARE_ENVIRONMENT": "test",
        "STUDYSHARE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "STUDYSHARE_KAFKA_REBALANCE_TIMEOUT_MS": "6000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "studyshare.share", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    stop_processes([proc])


async def test_worker_builds_the_directory(real_infra, mongo_db, worker):
    user_id, study_uid = unique("usr"), f"1.2.3.{time.time_ns()}"
    upstream = mongo_db.client[f"{mongo_db.name}_up"]
    try:
        await publish(
            real_infra,
            upstream,
            [
                envelope_for(
                    UserRegistered(
                        user_id=user_id,
                        username=user_id,
                        first_name="A",
                        last_name="B",
                        language="fr",
                        mobile="+32470111111",
                    ),
                    aggregate_id=user_id,
                    aggregate_version=1,
                    actor=Actor(id="t"),
                ),
                envelope_for(
                    StudyReceived(study_uid=study_uid, department_id="dep_w", owner_id=user_id),
                    aggregate_id=study_uid,
                    aggregate_version=1,
                    actor=Actor(id="t"),
                ),
            ],
        )
        users = await GenerationPointer(mongo_db, "directory").collection("users")
        studies = await GenerationPointer(mongo_db, "directory").collection("studies")

        async def seen():
            return (
                await users.find_one({"_id": user_id}),
                await studies.find_one({"_id": study_uid}),
            )

        user, study = await eventually(lambda: _all(seen))
        assert user["language"] == "fr" and user["mobile"] == "+32470111111"
        assert study["department_id"] == "dep_w" and study["owner_id"] == user_id
        assert worker.poll() is None
    finally:
        await mongo_db.client.drop_database(upstream.name)


async def _all(check):
    values = await check()
    return values if all(values) else None
