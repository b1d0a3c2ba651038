import asyncio

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import OTPFailed
from studyshare.plumbing.aggregate import Repository
from studyshare.plumbing.domain import Aggregate, applies
from studyshare.plumbing.eventstore import ConcurrencyConflict, EventStore, envelope_for
from studyshare.plumbing.fakes import InMemoryEventStore
from studyshare.plumbing.http import status_of

from .conftest import otp_failures


async def test_two_concurrent_appends_at_the_same_version_exactly_one_wins(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    await store.append(otp_failures("bkt_1", 1))
    contenders = [otp_failures("bkt_1", 1, start=2) for _ in range(2)]
    results = await asyncio.gather(*(store.append(c) for c in contenders), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 1
    loaded = await store.load("bkt_1")
    assert [e.aggregate_version for e in loaded] == [1, 2]


async def test_a_conflict_is_a_409_rule(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    await store.append(otp_failures("bkt_2", 2))
    with pytest.raises(ConcurrencyConflict) as refused:
        await store.append(otp_failures("bkt_2", 1, start=2))
    assert status_of(refused.value) == 409
    assert refused.value.rule == "ConcurrencyConflict"


class FailureCounter(Aggregate):
    aggregate_type = "Bucket"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.failures = 0

    @applies
    def when_o_t_p_failed(self, event: OTPFailed) -> None:
        self.failures = event.consecutive_failures

    def fail(self) -> list[OTPFailed]:
        return [
            OTPFailed(bucket_id=self.id, recipient_id="r", consecutive_failures=self.failures + 1)
        ]


async def test_repository_retries_so_concurrent_commands_all_land_in_order(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    repo = Repository(store, FailureCounter)
    await asyncio.gather(
        *(repo.execute("bkt_3", FailureCounter.fail, Actor(id="r"), retries=20) for _ in range(5))
    )
    bucket = await repo.get("bkt_3")
    assert bucket.version == 5
    assert bucket.failures == 5


async def test_execute_decides_first_on_the_aggregate_the_caller_loaded(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    repo = Repository(store, FailureCounter)
    await repo.execute("bkt_5", FailureCounter.fail, Actor(id="r"))
    stale = await repo.get("bkt_5")
    await repo.execute("bkt_5", FailureCounter.fail, Actor(id="r"))
    decided_on: list[int] = []

    def fail(counter: FailureCounter) -> list[OTPFailed]:
        decided_on.append(counter.version)
        return counter.fail()

    bucket, _ = await repo.execute("bkt_5", fail, Actor(id="r"), loaded=stale)
    assert decided_on == [1, 2]  # the stale copy lost the race: reloaded and decided again
    assert (bucket.version, bucket.failures) == (3, 3)
    fresh = await repo.get("bkt_5")
    await repo.execute("bkt_5", fail, Actor(id="r"), loaded=fresh)
    assert decided_on == [1, 2, 3]
    assert (await repo.get("bkt_5")).failures == 4


async def test_loaded_events_keep_their_envelope(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    event = envelope_for(
        OTPFailed(bucket_id="bkt_4", recipient_id="r", consecutive_failures=1),
        aggregate_id="bkt_4",
        aggregate_version=1,
        actor=Actor(id="r", role="physician"),
        correlation_id="corr-4",
    )
    await store.append([event])
    [loaded] = await store.load("bkt_4")
    assert loaded == event


class ViewFailed(Exception):
    pass


async def test_a_view_that_fails_leaves_no_event_behind(mongo_db):
    """The unit of work: events and the view that follows them commit together or not at all."""
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    views = mongo_db.failure_view

    async def failing_view(counter: FailureCounter, envelopes, session) -> None:
        await views.replace_one(
            {"_id": counter.id}, {"failures": counter.failures}, upsert=True, session=session
        )
        if counter.failures == 2:
            raise ViewFailed("the read model refused")

    repo = Repository(store, FailureCounter, view=failing_view)
    await repo.execute("bkt_6", FailureCounter.fail, Actor(id="r"))
    with pytest.raises(ViewFailed):
        await repo.execute("bkt_6", FailureCounter.fail, Actor(id="r"))
    assert [e.aggregate_version for e in await store.load("bkt_6")] == [1]
    assert await views.find_one({"_id": "bkt_6"}) == {"_id": "bkt_6", "failures": 1}
    assert await mongo_db.events.count_documents({"aggregate_id": "bkt_6"}) == 1


async def test_the_in_memory_store_keeps_the_real_ones_contract():
    """`fakes` behaves as the Mongo store does above: conflicts retried, failures rolled back."""
    store = InMemoryEventStore()
    seen: list[int] = []

    async def view(counter: FailureCounter, envelopes, session) -> None:
        seen.append(counter.failures)
        if counter.failures == 3:
            raise ViewFailed("the read model refused")

    repo = Repository(store, FailureCounter, view=view)
    await asyncio.gather(
        *(repo.execute("bkt_7", FailureCounter.fail, Actor(id="r")) for _ in range(2))
    )
    assert [e.aggregate_version for e in await store.load("bkt_7")] == [1, 2]
    with pytest.raises(ViewFailed):
        await repo.execute("bkt_7", FailureCounter.fail, Actor(id="r"))
    assert len(store.committed) == 2 and seen == [1, 2, 3]
    with pytest.raises(ConcurrencyConflict):
        await store.append(otp_failures("bkt_7", 1, start=2))
    await store.append(otp_failures("bkt_8", 3))  # several versions of one stream at once
    assert [e.aggregate_version for e in await store.load("bkt_8")] == [1, 2, 3]
    with pytest.raises(ConcurrencyConflict):
        await store.append(otp_failures("bkt_8", 2, start=3))
