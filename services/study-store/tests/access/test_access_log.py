"""The study logging of accesses: coalesced per actor, study, action and window; batched
writes; a shutdown flushes everything; a crash loses at most the open window."""

from __future__ import annotations

from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.eventstore import EventStore
from studyshare.study_store.domain.access import AccessDecision
from studyshare.study_store.service_layer.access_log import AccessLog


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def decision(uid="1.2.3", **kw) -> AccessDecision:
    values = dict(
        study_uid=uid,
        images=True,
        report="read",
        download=True,
        anonymized=False,
        via="grant",
        reason="t",
        bucket_id="bkt_1",
    )
    values.update(kw)
    return AccessDecision(**values)


def user(sub: str) -> AccessClaims:
    return AccessClaims(sub=sub, roles=("physician",), iat=0, exp=2**31)


async def _stored(db, event_type):
    return await db.events.find({"event_type": event_type}).to_list(None)


async def test_accesses_coalesce_per_actor_study_action_and_minute(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    clock = Clock(1_800_000_000.0)  # on a minute boundary
    log = AccessLog(store, window_s=60, clock=clock)
    for _ in range(1000):
        log.record(decision(), user("usr_a"), "instances")
    log.record(decision(), user("usr_b"), "instances")
    log.record(decision(), user("usr_a"), "metadata")
    log.record(decision("9.9"), user("usr_a"), "instances")
    assert await log.flush() == 0, "the window is still open: nothing written yet"
    clock.t += 59.9
    log.record(decision(), user("usr_a"), "instances")
    clock.t += 0.1  # the minute closed
    log.record(decision(), user("usr_a"), "instances")  # next window
    assert await log.flush() == 4, "one event per (actor, study, action) of the closed minute"
    events = await _stored(mongo_db, "StudyAccessed")
    counts = {
        (e["actor"]["id"], e["payload"]["study_uid"], e["payload"]["action"]): e["payload"]["count"]
        for e in events
    }
    assert counts == {
        ("usr_a", "1.2.3", "instances"): 1001,
        ("usr_b", "1.2.3", "instances"): 1,
        ("usr_a", "1.2.3", "metadata"): 1,
        ("usr_a", "9.9", "instances"): 1,
    }
    assert log.buffered == 1
    await log.close()
    assert len(await _stored(mongo_db, "StudyAccessed")) == 5, "shutdown flushes the open window"


async def test_downloads_are_never_coalesced_and_written_promptly(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    log = AccessLog(store, window_s=60)
    for _ in range(3):
        log.record(decision(), user("usr_a"), "download")
    assert await log.flush() == 3
    downloads = await _stored(mongo_db, "StudyDownloaded")
    assert len(downloads) == 3 and {d["topic"] for d in downloads} == {"study.events"}
    assert all(d["aggregate_type"] == "StudyAccess" for d in downloads)


async def test_patient_and_break_the_glass_accesses_name_their_path(mongo_db):
    store = EventStore(mongo_db)
    log = AccessLog(store, window_s=60)
    patient = AccessClaims(
        sub="ref:X",
        kind="patient",
        reference_number="AB12CD34EF",
        study_uid="1.2.3",
        iat=0,
        exp=2**31,
    )
    log.record(
        decision(via="reference_number", reference_number="AB12CD34EF", bucket_id=None),
        patient,
        "view",
    )
    log.record(decision(via="break_the_glass", bucket_id=None), user("usr_er"), "view")
    await log.close()
    events = {e["payload"]["via"]: e for e in await _stored(mongo_db, "StudyAccessed")}
    assert events["reference_number"]["payload"]["reference_number"] == "AB12CD34EF"
    assert events["reference_number"]["payload"]["user_id"] is None
    assert events["reference_number"]["actor"]["kind"] == "patient"
    assert events["break_the_glass"]["actor"]["role"] == "break_the_glass"


async def test_a_failed_write_is_kept_and_retried(mongo_db):
    store = EventStore(mongo_db)
    log = AccessLog(store, window_s=60)
    log.record(decision(), user("usr_a"), "download")

    original = store.append

    async def broken(envelopes, session=None):
        raise ConnectionError("database away")

    store.append = broken
    try:
        await log.flush()
    except ConnectionError:
        pass
    else:
        raise AssertionError("the failure must surface")
    assert log.buffered == 1
    store.append = original
    assert await log.flush() == 1
    assert len(await _stored(mongo_db, "StudyDownloaded")) == 1


def test_record_is_cheap_and_awaitable():
    """record() never touches the database; in async code its result may be awaited."""
    import asyncio

    log = AccessLog(EventStore.__new__(EventStore), window_s=60)

    async def main():
        await log.record(decision(), user("usr_a"), "rendered")
        return log.buffered

    assert asyncio.run(main()) == 1


async def test_a_refused_decision_is_not_registered_as_an_access(mongo_db):
    log = AccessLog(EventStore(mongo_db), window_s=60)
    log.record(decision(images=False, via=None, refusal="revoked"), user("usr_a"), "view")
    assert log.buffered == 0
    await log.close()
    assert await _stored(mongo_db, "StudyAccessed") == []
