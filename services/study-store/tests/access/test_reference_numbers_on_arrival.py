"""Issue 16, point 2: whether a study gets a reference number as it arrives is its department's
policy (`reference_numbers_on_arrival`), the number follows the department's rule, validity and
payment, and a redelivered arrival issues nothing new."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from studyshare.contracts.events.study import StudyReceived
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.reference_ids import open_number, reference_id
from studyshare.study_store.domain import reference_numbers as rn
from studyshare.study_store.service_layer.reference_numbers import issue_on_arrival
from studyshare.study_store.settings import StudyStoreSettings

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
SECRET = "reference-number-secret"


def received(uid: str) -> StudyReceived:
    return StudyReceived(
        study_uid=uid, department_id="dep_rad", patient_birth_date=date(1980, 2, 14)
    )


async def _issued(store: EventStore) -> list:
    return [e for e in await store.all_events() if e.event_type == "ReferenceNumberIssued"]


async def test_a_departments_studies_get_a_number_on_arrival_once(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    department = {
        "reference_numbers_on_arrival": True,
        "reference_number_rule": {"length": 12, "alphabet": "digits"},
        "reference_number_validity_days": 90,
        "payment_required": True,
    }
    ref_id = await issue_on_arrival(store, department, received("1.2.3"), NOW, SECRET)
    again = await issue_on_arrival(store, department, received("1.2.3"), NOW, SECRET)
    assert ref_id is not None and again == ref_id, "a redelivered arrival issues nothing new"
    [issued] = await _issued(store)
    p = issued.payload
    number = open_number(p["sealed_number"], ref_id, SECRET) or ""
    assert p["reference_id"] == ref_id == reference_id(number, SECRET)
    assert len(number) == 12 and number.isdigit() and number not in str(issued)
    assert p["study_uid"] == "1.2.3" and p["complies_with_rule"]
    assert datetime.fromisoformat(p["valid_to"]) == NOW + timedelta(days=90)
    assert p["pincode_required"] is True
    assert issued.actor.kind == "system"

    other = await issue_on_arrival(store, department, received("1.2.4"), NOW, SECRET)
    assert other not in (None, ref_id) and len(await _issued(store)) == 2


async def test_no_number_on_arrival_unless_the_department_asks(mongo_db):
    store = EventStore(mongo_db)
    await store.ensure_indexes()
    for department in ({}, {"reference_numbers_on_arrival": False}):
        assert await issue_on_arrival(store, department, received("1.2.5"), NOW, SECRET) is None
    assert await _issued(store) == []


def test_validity_as_allowed_by_the_source():
    days = 30
    default = rn.validity_as_allowed(NOW, None, None, days)
    assert default == (None, NOW + timedelta(days=30))
    start = NOW + timedelta(days=5)
    assert rn.validity_as_allowed(NOW, start, None, days) == (start, start + timedelta(days=30))
    inside = NOW + timedelta(days=10)
    assert rn.validity_as_allowed(NOW, None, inside, days) == (None, inside)
    with pytest.raises(rn.ReferenceNumberValidityBeyondPolicy):
        rn.validity_as_allowed(NOW, None, NOW + timedelta(days=31), days)
    clamped = rn.validity_as_allowed(NOW, None, NOW + timedelta(days=31), days, clamp=True)
    assert clamped == (None, NOW + timedelta(days=30))
    # no policy: no date restriction unless one is given
    assert rn.validity_as_allowed(NOW, None, None, None) == (None, None)
    naive = datetime(2027, 3, 20, 9, 0)
    assert rn.validity_as_allowed(NOW, None, naive, days) == (None, naive.replace(tzinfo=UTC))


async def test_the_worker_issues_on_arrival_but_a_replay_leaves_old_studies_alone(mongo_db):
    """The worker's reaction reads the department from the access read model; an arrival
    older than the horizon (a replay from offset 0) gets nothing."""
    from studyshare.contracts.envelope import Actor
    from studyshare.plumbing.eventstore import envelope_for
    from studyshare.plumbing.projection import GenerationPointer, ProjectionContext
    from studyshare.study_store.adapters.read_models import ACCESS_PROJECTION
    from studyshare.study_store.service_layer.reactions import ARRIVAL_HORIZON, ArrivalReactions

    store = EventStore(mongo_db)
    await store.ensure_indexes()
    docs = await GenerationPointer(mongo_db, ACCESS_PROJECTION).collection("docs")
    await docs.insert_one(
        {"_id": "department:dep_rad", "kind": "department", "reference_numbers_on_arrival": True}
    )
    now = datetime.now(UTC)

    def arrival(uid: str, at: datetime):
        return envelope_for(
            received(uid), aggregate_id=uid, aggregate_version=1, actor=Actor(), occurred_at=at
        )

    reaction = ArrivalReactions(StudyStoreSettings())
    ctx = ProjectionContext(db=mongo_db, projection=reaction.name, generation=1)
    await reaction.apply(
        [arrival("1.2.new", now), arrival("1.2.old", now - ARRIVAL_HORIZON - timedelta(hours=1))],
        ctx,
    )
    assert [e.payload["study_uid"] for e in await _issued(store)] == ["1.2.new"]
