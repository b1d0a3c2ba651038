"""The real worker (`python -m studyshare.share worker`) against the real broker: it builds the
directory from identity/study events and heals the bucket read model from share events."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import UserRegistered
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.contracts.events.study import StudyReceived
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import GenerationPointer
from studyshare.plumbing.testing import publish_events, unique


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
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def test_worker_builds_the_directory_and_heals_the_bucket_read_model(
    real_infra, mongo_db, worker
):
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
        bucket_id = unique("bkt")
        shared = StudyShared(
            bucket_id=bucket_id,
            study_uids=(study_uid,),
            recipients=(RecipientRef(recipient_id=user_id, kind="user"),),
            sender_id="usr_s",
            access_level="images_report_read",
            reason="r",
            language="fr",
        )
        # appended without its inline rendering, as if the API had crashed right after
        await publish(
            real_infra,
            mongo_db,
            [
                envelope_for(
                    shared, aggregate_id=bucket_id, aggregate_version=1, actor=Actor(id="usr_s")
                )
            ],
        )
        users = await GenerationPointer(mongo_db, "directory").collection("users")
        studies = await GenerationPointer(mongo_db, "directory").collection("studies")

        async def seen():
            return (
                await users.find_one({"_id": user_id}),
                await studies.find_one({"_id": study_uid}),
                await mongo_db.buckets_view.find_one({"_id": bucket_id}),
            )

        user, study, bucket = await eventually(lambda: _all(seen))
        assert user["language"] == "fr" and user["mobile"] == "+32470111111"
        assert study["department_id"] == "dep_w" and study["owner_id"] == user_id
        assert bucket["active_recipient_ids"] == [user_id] and bucket["status"] == "active"
        assert worker.poll() is None
    finally:
        await mongo_db.client.drop_database(upstream.name)


async def _all(check):
    values = await check()
    return values if all(values) else None


async def test_catch_up_renders_only_buckets_whose_rendering_is_behind(mongo_db):
    """A bucket rendered inline (version up to date) is left alone; one rendered behind its
    events (crash between append and render) is re-rendered from the event store."""
    from studyshare.contracts.events.share import AccessRevoked
    from studyshare.plumbing.eventstore import EventStore
    from studyshare.plumbing.projection import ProjectionContext
    from studyshare.share.adapters.projections import BucketsCatchUp

    store = EventStore(mongo_db)
    await store.ensure_indexes()
    current, behind = unique("bkt"), unique("bkt")
    envelopes = []
    for bucket_id in (current, behind):
        shared = StudyShared(
            bucket_id=bucket_id,
            study_uids=("1.2.3",),
            recipients=(RecipientRef(recipient_id="usr_r", kind="user"),),
            sender_id="usr_s",
            access_level="images_report_read",
            reason="r",
            language="en",
        )
        revoked = AccessRevoked(bucket_id=bucket_id, scope="bucket", revoked_by="usr_s")
        envelopes += [
            envelope_for(shared, aggregate_id=bucket_id, aggregate_version=1, actor=Actor(id="s")),
            envelope_for(revoked, aggregate_id=bucket_id, aggregate_version=2, actor=Actor(id="s")),
        ]
    await store.append(envelopes[:2])
    await store.append(envelopes[2:])
    views = mongo_db.buckets_view
    await views.insert_many(
        [
            {"_id": current, "version": 2, "marker": "inline rendering"},
            {"_id": behind, "version": 1, "status": "active", "marker": "stale"},
        ]
    )

    await BucketsCatchUp().apply(envelopes, ProjectionContext(mongo_db, "buckets_catch_up", 0))

    assert (await views.find_one({"_id": current}))["marker"] == "inline rendering"
    healed = await views.find_one({"_id": behind})
    assert healed["version"] == 2 and healed["status"] == "revoked" and "marker" not in healed
