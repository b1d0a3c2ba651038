"""`plumbing.snapshot`: a live projection compared with a scratch rebuild from offset 0."""

from __future__ import annotations

from typing import Any

from studyshare.plumbing.projection import GenerationPointer, ProjectionRunner
from studyshare.plumbing.snapshot import differences, live_state, rebuilt_state
from studyshare.plumbing.testing import unique

from .conftest import otp_failures
from .tally_service import Tally
from .test_worker_replay import publish_raw


class TallyOf(Tally):
    """Tally, compared only on this test's buckets (the topic holds other tests' events)."""

    def __init__(self, buckets: set[str]) -> None:
        self.buckets = buckets

    def comparable(self, collection: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        if collection == "applied" or doc["_id"] not in self.buckets:
            return None  # `applied` is keyed by generated ids
        return doc


async def test_live_state_equals_rebuild_and_every_difference_is_named(real_infra, mongo_db):
    settings = real_infra.settings()
    buckets = [unique("bkt") for _ in range(3)]
    events = [e for b in buckets for e in otp_failures(b, 4)]
    await publish_raw(settings, events)
    projection = TallyOf(set(buckets))
    await ProjectionRunner(projection, mongo_db).apply_batch(events)  # the live generation

    live = await live_state(mongo_db, projection)
    rebuilt = await rebuilt_state(mongo_db, projection, settings.kafka_bootstrap, idle_s=1.5)
    assert set(live["counts"]) == set(buckets)
    assert live["_checkpoints"] == {b: {"_id": b, "v": 4} for b in buckets}
    assert differences(live, rebuilt) == []
    assert await GenerationPointer(mongo_db, "tally", cache_s=0).current() == 0
    names = await mongo_db.list_collection_names()
    assert not [n for n in names if n.startswith("tally.g1.")], "the scratch generation is gone"

    counts = mongo_db["tally.g0.counts"]
    await counts.update_one({"_id": buckets[0]}, {"$inc": {"n": 1}})
    await counts.delete_one({"_id": buckets[1]})
    found = differences(await live_state(mongo_db, projection), rebuilt)
    assert sorted(found) == sorted(
        [
            f"counts/{buckets[0]}: n: 5 != 4",
            f"counts/{buckets[1]}: only rebuilt: {{'_id': '{buckets[1]}', 'n': 4}}",
        ]
    )
