"""The study logging of accesses: each access stored (as a count in its window's tally) before
`record` resolves, concurrent accesses sharing one write; closed tallies become events,
coalesced per actor, study, action and window; refusals are entries too."""

from __future__ import annotations

import asyncio

import pytest

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.eventstore import EventStore
from studyshare.study_store.entrypoints.dependencies import requested_action
from studyshare.study_store.service_layer.access_log import TALLIES, AccessLog


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


async def _counted(db) -> int:
    return sum(d["count"] for d in await db[TALLIES].find().to_list(None))


async def _log(db, **kw) -> AccessLog:
    store = EventStore(db)
    await store.ensure_indexes()
    log = AccessLog(store, **kw)
    await log.ensure_indexes()
    return log


async def test_each_access_is_stored_when_record_resolves_and_coalesces_per_window(mongo_db):
    clock = Clock(1_800_000_000.0)  # on a minute boundary
    log = await _log(mongo_db, window_s=60, clock=clock)
    await asyncio.gather(*(log.record(decision(), user("usr_a"), "instances") for _ in range(1000)))
    assert await _counted(mongo_db) == 1000, "stored before the answers leave"
    await log.record(decision(), user("usr_b"), "instances")
    await log.record(decision(), user("usr_a"), "metadata")
    await log.record(decision("9.9"), user("usr_a"), "instances")
    assert await log.flush() == 0, "the window is still open: no event yet"
    clock.t += 59.9
    await log.record(decision(), user("usr_a"), "instances")
    clock.t += 0.1  # the minute closed
    await log.record(decision(), user("usr_a"), "instances")  # next window
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
    assert await _counted(mongo_db) == 1
    await log.close()
    assert len(await _stored(mongo_db, "StudyAccessed")) == 5, "shutdown flushes the open window"
    assert await _counted(mongo_db) == 0


async def test_concurrent_accesses_share_one_write(mongo_db):
    log = await _log(mongo_db, window_s=60)
    writes = 0
    original = log.tallies.bulk_write

    async def counting(*args, **kwargs):
        nonlocal writes
        writes += 1
        return await original(*args, **kwargs)

    log.tallies.bulk_write = counting  # type: ignore[method-assign]
    await asyncio.gather(
        *(log.record(decision(f"1.2.{i % 7}"), user("usr_a"), "metadata") for i in range(500))
    )
    assert await _counted(mongo_db) == 500
    assert writes <= 2, writes


async def test_downloads_are_never_coalesced(mongo_db):
    log = await _log(mongo_db, window_s=60)
    for _ in range(3):
        await log.record(decision(), user("usr_a"), "download")
    assert await log.flush() == 3, "a download's tally closes at once"
    downloads = await _stored(mongo_db, "StudyDownloaded")
    assert len(downloads) == 3 and {d["topic"] for d in downloads} == {"study.events"}
    assert all(d["aggregate_type"] == "StudyAccess" for d in downloads)


async def test_patient_and_break_the_glass_accesses_name_their_path(mongo_db):
    log = await _log(mongo_db, window_s=60)
    patient = AccessClaims(
        sub="ref:X",
        kind="patient",
        reference_id="AB12CD34EF",
        study_uid="1.2.3",
        iat=0,
        exp=2**31,
    )
    await log.record(
        decision(via="reference_number", reference_id="AB12CD34EF", bucket_id=None),
        patient,
        "view",
    )
    await log.record(decision(via="break_the_glass", bucket_id=None), user("usr_er"), "view")
    await log.close()
    events = {e["payload"]["via"]: e for e in await _stored(mongo_db, "StudyAccessed")}
    assert events["reference_number"]["payload"]["reference_id"] == "AB12CD34EF"
    assert events["reference_number"]["payload"]["user_id"] is None
    assert events["reference_number"]["actor"]["kind"] == "patient"
    assert events["break_the_glass"]["actor"]["role"] == "break_the_glass"


async def test_a_failed_write_fails_the_waiting_requests_and_the_next_ones_are_stored(mongo_db):
    log = await _log(mongo_db, window_s=60)
    original = log.tallies.bulk_write

    async def broken(*args, **kwargs):
        raise ConnectionError("database away")

    log.tallies.bulk_write = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await log.record(decision(), user("usr_a"), "view")
    log.tallies.bulk_write = original  # type: ignore[method-assign]
    await log.record(decision(), user("usr_a"), "view")
    assert await _counted(mongo_db) == 1


async def test_a_refusal_is_an_entry_named_by_its_rule(mongo_db):
    log = await _log(mongo_db, window_s=60)
    refused = decision(images=False, via=None, refusal="revoked")
    await log.record(refused, user("usr_a"), "view")
    await log.refused(refused, user("usr_a"), "metadata", "AccessWasRevoked")
    await log.close()
    assert await _stored(mongo_db, "StudyAccessed") == []
    entries = {
        e["payload"]["action"]: e["payload"] for e in await _stored(mongo_db, "StudyAccessRefused")
    }
    assert entries["view"]["rule"] == "revoked" and entries["view"]["user_id"] == "usr_a"
    assert entries["metadata"]["rule"] == "AccessWasRevoked"


async def test_tallies_left_by_a_killed_process_are_flushed_by_another(mongo_db):
    clock = Clock(1_800_000_000.0)
    dead = await _log(mongo_db, window_s=60, clock=clock)
    await dead.record(decision(), user("usr_a"), "rendered")  # then the process dies
    clock.t += 60
    other = await _log(mongo_db, window_s=60, clock=clock)
    assert await other.flush() == 1
    [event] = await _stored(mongo_db, "StudyAccessed")
    assert event["payload"]["action"] == "rendered" and event["payload"]["count"] == 1


def test_a_refused_route_names_its_action():
    uid = "/dicomweb/studies/1.2.3"
    assert requested_action("GET", "/api/studies/1.2.3") == "view"
    assert requested_action("GET", "/api/studies/1.2.3/report") == "report_read"
    assert requested_action("PUT", "/api/studies/1.2.3/report") == "report_write"
    assert requested_action("GET", "/api/studies/1.2.3/download") == "download"
    assert requested_action("POST", "/api/studies/1.2.3/forward") == "forward"
    assert requested_action("GET", f"{uid}/metadata") == "metadata"
    assert requested_action("GET", f"{uid}/series/4/metadata") == "metadata"
    assert requested_action("GET", f"{uid}/series/4/instances/5/rendered") == "rendered"
    assert requested_action("GET", f"{uid}/thumbnail") == "rendered"
    assert requested_action("GET", uid) == "instances"
    assert requested_action("GET", f"{uid}/series/4/instances/5/frames/1") == "instances"
    assert requested_action("GET", f"{uid}/series") == "view"


async def test_the_first_open_through_a_bucket_is_appended_at_once_and_only_once(mongo_db):
    """Issue 16, point 12: the message turns read within a second, though accesses stay
    batched per window: the first view, metadata or instances access of a user to a study
    through a bucket is `StudyFirstOpened`, stored before `record` resolves, once however many
    requests or processes see it."""
    clock = Clock(1_800_000_000.0)
    first, second = await _log(mongo_db, clock=clock), await _log(mongo_db, clock=clock)
    await asyncio.gather(
        *(log.record(decision(), user("usr_a"), "instances") for log in (first, second)),
        *(first.record(decision(), user("usr_a"), "metadata") for _ in range(20)),
    )
    opened = await _stored(mongo_db, "StudyFirstOpened")
    assert [(e["payload"]["user_id"], e["payload"]["bucket_id"]) for e in opened] == [
        ("usr_a", "bkt_1")
    ]
    assert await _stored(mongo_db, "StudyAccessed") == [], "the accesses themselves wait"
    assert await _counted(mongo_db) == 22

    # not an opening: a search or a list, a refusal, a patient or a department's own study
    await first.record(decision(), user("usr_b"), "search")
    await first.record(decision(), user("usr_b"), "list")
    await first.record(decision(images=False, refusal="revoked"), user("usr_b"), "view")
    await first.record(decision(bucket_id=None, via="department"), user("usr_b"), "view")
    patient = AccessClaims(sub="ref_1", kind="patient", roles=(), iat=0, exp=2**31)
    await first.record(decision(), patient, "view")
    assert len(await _stored(mongo_db, "StudyFirstOpened")) == 1

    # the same study in a later bucket (its own message) is opened for the first time again
    await second.record(decision(bucket_id="bkt_2"), user("usr_a"), "view")
    await second.record(decision(bucket_id="bkt_2"), user("usr_a"), "view")
    assert len(await _stored(mongo_db, "StudyFirstOpened")) == 2
    await first.close()
    await second.close()


async def test_a_stored_first_open_is_folded_into_this_processs_model_at_once(mongo_db):
    """The process that served the first open reads the message at once (ahead of the
    worker); a first open another request stored before is not folded twice."""
    folded: list = []
    log = await _log(mongo_db, clock=Clock(1_800_000_000.0), apply_local=folded.extend)
    await log.record(decision(), user("usr_a"), "metadata")
    await log.record(decision(), user("usr_a"), "instances")
    assert [(e.event_type, e.payload["user_id"]) for e in folded] == [("StudyFirstOpened", "usr_a")]
    await log.close()
