"""Issue 15, point 13: the access barrier. The share service hands over a revoked or locked
bucket's whole stream; the study store folds it into the read model (the worker's projection)
and answers once every API process (follower) decides on it, so the next request is refused
without waiting for the relay, the broker or the worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events.identity import GroupCreated
from studyshare.contracts.events.share import AccessRevoked, BucketLocked
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.followers import FollowerRegistry
from studyshare.study_store.adapters.access_documents import MongoAccessDocuments
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.domain.exceptions import BarrierEventsRefused
from studyshare.study_store.service_layer.access_barrier import ACCESS_FOLLOWERS, check_streams

from .conftest import study_shared

UID = "1.2.826.0.1.3680043.13.1"
BARRIER = "/internal/access/barrier"
AS_SHARE = {"studyshare-caller": "share", "authorization": "Bearer dev-internal-share"}


def wire(*envelopes: EventEnvelope) -> dict[str, Any]:
    return {"events": [e.model_dump(mode="json") for e in envelopes], "timeout_s": 5}


async def _status(h, headers) -> int:
    return (await h.http.get(f"/api/studies/{UID}", headers=headers)).status_code


def revoked(bucket_id: str, recipient_id: str) -> AccessRevoked:
    return AccessRevoked(
        bucket_id=bucket_id, scope="recipient", recipient_id=recipient_id, revoked_by="usr_s"
    )


async def test_a_revoked_stream_is_decided_on_by_the_time_the_barrier_answers(harness):
    h = harness
    await h.study(UID)
    shared = h.events(study_shared("bkt_b1", [UID], [("usr_doc", "user")]), "bkt_b1")
    await h.project(shared)  # the worker had the share
    await h.sync()
    doctor = h.user("usr_doc", "physician")
    assert await _status(h, doctor) == 200

    revocation = h.events(revoked("bkt_b1", "usr_doc"), "bkt_b1")
    answer = await h.http.post(BARRIER, json=wire(shared, revocation), headers=AS_SHARE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["confirmed"] is True and answer.json()["followers"] == 1
    assert await _status(h, doctor) == 403, "the very next request"
    assert await h.runner.apply_batch([shared, revocation]) == 0, "the worker skips them"


async def test_a_stream_the_worker_never_saw_is_folded_whole(harness):
    """The share and its lock reach the study store first through the barrier."""
    h = harness
    await h.study(UID)
    shared = h.events(
        study_shared("bkt_b2", [UID], [("usr_doc", "user")], two_factor=True), "bkt_b2"
    )
    locked = h.events(
        BucketLocked(bucket_id="bkt_b2", recipient_id="usr_x", failed_attempts=5), "bkt_b2"
    )
    answer = await h.http.post(BARRIER, json=wire(shared, locked), headers=AS_SHARE)
    assert answer.json()["confirmed"] is True
    refused = await h.http.get(f"/api/studies/{UID}", headers=h.user("usr_doc", "physician"))
    assert refused.status_code == 423 and refused.json()["rule"] == "BucketIsLocked"


async def test_the_barrier_waits_for_every_follower_and_out_waits_a_dead_one(harness):
    h = harness
    await h.study(UID)
    shared = h.events(study_shared("bkt_b3", [UID], [("usr_doc", "user")]), "bkt_b3")
    await h.project(shared)
    registry = FollowerRegistry(h.db[ACCESS_FOLLOWERS], poll_s=0.01)
    other, dead = (
        AccessModel(
            MongoAccessDocuments(h.db),
            refresh_interval_s=0.05,
            lease_s=3.0,
            registry=registry,
            follower_id=name,
        )
        for name in ("other", "dead")
    )
    await other.start()
    await dead.start()
    for task in dead._tasks:
        task.cancel()  # killed: it neither follows, nor beats, nor leaves
    claims = AccessClaims(sub="usr_doc", roles=("physician",), iat=0, exp=2**31)
    assert (await other.decide(claims, UID)).images and (await dead.decide(claims, UID)).images

    revocation = h.events(revoked("bkt_b3", "usr_doc"), "bkt_b3")
    answer = await h.http.post(BARRIER, json=wire(shared, revocation), headers=AS_SHARE)
    body = answer.json()
    try:
        assert body["confirmed"] is True and body["followers"] == 3, body
        assert (await other.decide(claims, UID)).refusal == "revoked"
        assert (await dead.decide(claims, UID)).refusal == "stale", "waited out: it decides nothing"
        assert await _status(h, h.user("usr_doc", "physician")) == 403
    finally:
        await other.stop()


async def test_the_barrier_answers_unconfirmed_when_a_follower_keeps_lagging(harness):
    h = harness
    await h.study(UID)
    registry = FollowerRegistry(h.db[ACCESS_FOLLOWERS])
    stop = asyncio.Event()

    async def lagging() -> None:  # alive (it beats) but never reads further
        while not stop.is_set():
            await registry.beat("lagging", 0, generation=0, lease_s=1.0)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(lagging())
    shared = h.events(study_shared("bkt_b4", [UID], [("usr_doc", "user")]), "bkt_b4")
    body = {**wire(shared), "timeout_s": 1.5}
    try:
        answer = (await h.http.post(BARRIER, json=body, headers=AS_SHARE)).json()
    finally:
        stop.set()
        await task
    assert answer["confirmed"] is False and answer["behind"] == ["lagging"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"studyshare-caller": "share", "authorization": "Bearer dev-internal-notify"},
        {"studyshare-caller": "notify", "authorization": "Bearer dev-internal-notify"},
    ],
)
async def test_only_the_share_service_may_call_the_barrier(harness, headers):
    h = harness
    shared = h.events(study_shared("bkt_b5", [UID], [("usr_doc", "user")]), "bkt_b5")
    answer = await h.http.post(BARRIER, json=wire(shared), headers=headers)
    assert answer.status_code == 401 and answer.json()["rule"] == "InternalCallerNotAdmitted"
    assert "/internal" not in (await h.http.get("/openapi.json")).text


async def test_the_barrier_takes_whole_streams_the_caller_owns_only(harness):
    h = harness
    group = h.events(
        GroupCreated(group_id="grp_x", name="G", primary_contact_id="usr_a", created_by="usr_a"),
        "grp_x",
    )
    answer = await h.http.post(BARRIER, json=wire(group), headers=AS_SHARE)
    assert answer.status_code == 422 and answer.json()["rule"] == "BarrierEventsRefused"
    h.events(study_shared("bkt_b6", [UID], [("usr_doc", "user")]), "bkt_b6")
    tail = h.events(revoked("bkt_b6", "usr_doc"), "bkt_b6")  # version 2 without version 1
    answer = await h.http.post(BARRIER, json=wire(tail), headers=AS_SHARE)
    assert answer.status_code == 422


def test_check_streams_wants_versions_one_to_n_in_order(harness_free_events):
    make = harness_free_events
    one, two = make("bkt_1"), make("bkt_1")
    check_streams("share", [one, two])
    for streams in ([two], [two, one], [one, one]):
        with pytest.raises(BarrierEventsRefused):
            check_streams("share", streams)
    with pytest.raises(BarrierEventsRefused):
        check_streams("identity", [one])


@pytest.fixture
def harness_free_events():
    from .conftest import Events

    events = Events()

    def make(bucket_id: str) -> EventEnvelope:
        return events(study_shared(bucket_id, [UID], [("usr_doc", "user")]), bucket_id)

    return make
