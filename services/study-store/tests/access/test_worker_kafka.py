"""The real worker (`python -m studyshare.study_store worker`) feeds the API's in-memory access
model from Kafka: a share opens the study, a revocation closes it on the next request."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

from studyshare.contracts.events.identity import (
    DepartmentCreated,
    DepartmentPolicySet,
    GroupCreated,
)
from studyshare.contracts.events.share import AccessRevoked, BucketLocked
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.kafka import producer
from studyshare.plumbing.testing import stop_processes, unique
from studyshare.study_store.adapters.access_documents import MongoAccessDocuments
from studyshare.study_store.adapters.access_model import AccessModel

from .conftest import now, study_received, study_shared, until


def _claims(sub, *roles):
    return AccessClaims(sub=sub, roles=roles, iat=0, exp=2**31)


UID = "1.2.826.0.1.3680043.10.77"


async def test_worker_subprocess_feeds_decisions_and_revocation_is_fast(
    real_infra, harness, tmp_path
):
    h = harness
    env = {
        **os.environ,
        "STUDYSHARE_SERVICE_NAME": unique("study-store"),
        "STUDYSHARE_DATABASE": h.db.name,
        "STUDYSHARE_KAFKA_BOOTSTRAP": real_infra.kafka_bootstrap,
        "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
        "STUDYSHARE_ENVIRONMENT": "test",
        "STUDYSHARE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "STUDYSHARE_KAFKA_REBALANCE_TIMEOUT_MS": "6000",
    }
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "studyshare.study_store", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    started_procs = [worker]
    kafka = producer(real_infra.settings())
    await kafka.start()

    async def send(*envelopes):
        for e in envelopes:
            await kafka.send_and_wait(e.topic, key=e.aggregate_id.encode(), value=e.to_json_bytes())

    try:
        bucket, group = unique("bkt"), unique("grp")
        await send(
            h.events(study_received(UID, department_id="dep_other"), UID),
            h.events(
                study_shared(
                    bucket,
                    [UID],
                    [("usr_doc", "user"), (group, "group")],
                    valid_until=now() + timedelta(days=1),
                ),
                bucket,
            ),
            h.events(
                GroupCreated(
                    group_id=group, name="Practice", created_by="u", primary_contact_id="usr_member"
                ),
                group,
            ),
            # Any physician of the environment may break the glass on dep_other's studies.
            h.events(
                DepartmentCreated(department_id="dep_other", name="Other", created_by="u"),
                "dep_other",
            ),
            h.events(
                DepartmentPolicySet(
                    department_id="dep_other", set_by="u", break_the_glass="environment"
                ),
                "dep_other",
            ),
        )
        doctor = h.user("usr_doc", "physician")
        member = h.user("usr_member", "physician")

        async def status(headers):
            return (await h.http.get(f"/api/studies/{UID}", headers=headers)).status_code

        async def open_for_both():
            return await status(doctor) == 200 and await status(member) == 200

        ok, _ = await until(open_for_both, timeout=120, interval=0.1)
        assert ok, (tmp_path / "worker.log").read_text()[-3000:]
        assert worker.poll() is None

        latencies = []
        for event, headers, expected in (
            (
                BucketLocked(bucket_id=bucket, recipient_id="usr_doc", failed_attempts=5),
                member,
                423,
            ),
            (AccessRevoked(bucket_id=bucket, scope="bucket", revoked_by="usr_sender"), doctor, 403),
        ):
            started = time.monotonic()
            await send(h.events(event, bucket))

            async def refused(headers=headers, expected=expected):
                return await status(headers) == expected

            ok, _ = await until(refused, timeout=10, interval=0.005)
            latencies.append(time.monotonic() - started)
            assert ok, f"{event.event_type} not effective"
        print(f"kafka -> worker -> API refusal latency: {[round(x, 3) for x in latencies]} s")
        # The API's own share is <= its refresh interval (test_decisions_live asserts < 0.5 s
        # from the stored event); the rest is broker and worker fetch latency, which on this
        # shared test machine measured 0.3-0.8 s. Hard bound here, figures printed above.
        assert max(latencies) < 2.0, latencies

        # This service's own events go the same way (outbox -> relay -> Kafka -> worker), so
        # every other API replica learns of a break-the-glass unlock too.
        relay = subprocess.Popen(
            [sys.executable, "-m", "studyshare.study_store", "relay"],
            env=env,
            stdout=open(tmp_path / "relay.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        started_procs.append(relay)
        er = h.user("usr_er", "physician")
        r = await h.http.post(f"/api/studies/{UID}/break-glass", json={"reason": "ER"}, headers=er)
        assert r.status_code == 201, r.text
        other_replica = AccessModel(MongoAccessDocuments(h.db))

        async def replica_knows():
            await other_replica.load()
            decision = await other_replica.decide(_claims("usr_er", "physician"), UID)
            return decision.via == "break_the_glass"

        ok, elapsed = await until(replica_knows, timeout=60, interval=0.2)
        assert ok, (tmp_path / "relay.log").read_text()[-2000:]
        print(f"API -> relay -> kafka -> worker -> other replica: {elapsed:.2f} s")
    finally:
        await kafka.stop()
        stop_processes(started_procs)
