"""Issue 15, point 10: an access is stored before its answer leaves. A process registers an
access the way a route does (`await access_log.record(...)`), says it answered, and is killed
with SIGKILL at once: the access is in the database, and becomes a `StudyAccessed` event when
any other process of the service flushes the closed window."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from studyshare.plumbing.eventstore import EventStore
from studyshare.study_store.service_layer.access_log import TALLIES, AccessLog

ANSWERING_PROCESS = textwrap.dedent(
    """
    import asyncio, sys, time
    from pymongo import AsyncMongoClient
    from studyshare.contracts.tokens import AccessClaims
    from studyshare.plumbing.eventstore import EventStore
    from studyshare.access_policy.decision import AccessDecision
    from studyshare.study_store.service_layer.access_log import AccessLog

    async def main(url, name):
        db = AsyncMongoClient(url, tz_aware=True)[name]
        log = AccessLog(EventStore(db), window_s=3600)
        log.start()
        decision = AccessDecision(
            study_uid="1.2.840.99", images=True, report="read", download=False,
            anonymized=False, via="grant", reason="t", bucket_id="bkt_kill",
        )
        who = AccessClaims(sub="usr_killed", roles=("physician",), iat=0, exp=2**31)
        for action in ("metadata", "instances"):
            await log.record(decision, who, action)
            print("answered", action, flush=True)  # the answer would leave now
        time.sleep(60)  # blocks the loop: nothing more is written before the kill

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_an_answered_access_survives_a_kill_9_of_the_process(real_infra, mongo_db):
    process = subprocess.Popen(
        [sys.executable, "-c", ANSWERING_PROCESS, real_infra.mongo_url, mongo_db.name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        answered = [process.stdout.readline().split()[-1] for _ in range(2)]
        assert answered == ["metadata", "instances"]
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    assert process.returncode == -signal.SIGKILL
    tallies = await mongo_db[TALLIES].find().to_list(None)
    assert sorted(t["payload"]["action"] for t in tallies) == ["instances", "metadata"]

    # the next process flushes what the killed one left (its window of an hour is over)
    later = AccessLog(EventStore(mongo_db), window_s=3600, clock=lambda: time.time() + 3600)
    assert await later.flush() == 2
    events = await mongo_db.events.find({"event_type": "StudyAccessed"}).to_list(None)
    assert {(e["actor"]["id"], e["payload"]["action"]) for e in events} == {
        ("usr_killed", "metadata"),
        ("usr_killed", "instances"),
    }
