"""The projection on the real database: batches in one transaction, a rolled-back batch
retried leaves an unbroken chain, bucket events get the bucket's studies, the patient filter."""

from __future__ import annotations

from studyshare.audit.adapters.projections import AuditLogProjection
from studyshare.audit.adapters.store import AuditStore, LogFilter
from studyshare.contracts.events import study
from studyshare.plumbing.projection import GenerationPointer, ProjectionRunner

from .scenario import full_story


class FailsOnce(AuditLogProjection):
    """Writes the batch, then fails before commit: the transaction is rolled back."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def apply(self, events, ctx) -> None:
        await super().apply(events, ctx)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the database went away before commit")


async def test_a_rolled_back_batch_retried_keeps_the_chain_unbroken(mongo_db):
    story, ids = full_story()
    projection = FailsOnce()
    projection.failures = 0
    runner = ProjectionRunner(projection, mongo_db)
    await runner.apply_batch(story.events[:12])
    projection.failures = 1
    try:
        await runner.apply_batch(story.events[12:25])
    except RuntimeError:
        pass
    entries = await GenerationPointer(mongo_db, "audit_log").collection("entries")
    assert await entries.count_documents({}) == 12, "nothing of the failed batch was kept"
    assert await runner.apply_batch(story.events[12:25]) == 13
    await runner.apply_batch(story.events[25:])
    report = await AuditStore(mongo_db).verify()
    assert report["study_log"].ok, report["study_log"].problems
    assert report["study_log"].checked == len(story.events)
    locked = await entries.find_one({"event_type": "BucketLocked"})
    assert locked["study_uids"] == [ids["uid"]], "bucket events carry the bucket's studies"


async def test_the_patient_filter_finds_the_studies_of_the_patient_and_entries_naming_them(
    mongo_db,
):
    """A study received again under a corrected patient id belongs to the new patient; the
    entry that named the old one still turns up under the old one."""
    story, ids = full_story()
    corrected = f"{ids['patient']}-corrected"
    story.add(
        study.StudyReceived(study_uid=ids["uid"], department_id=ids["dep"], patient_id=corrected),
        ids["uid"],
        "system-dicom",
        kind="system",
    )
    runner = ProjectionRunner(AuditLogProjection(), mongo_db)
    await runner.apply_batch(story.events)
    store = AuditStore(mongo_db)
    naming_old, old_total = await store.page(LogFilter(patient_id=ids["patient"]), 0, 500)
    assert old_total == 1
    assert [(e["event_type"], e["patient_id"]) for e in naming_old] == [
        ("StudyReceived", ids["patient"])
    ]
    log = await GenerationPointer(mongo_db, "audit_log").collection("entries")
    of_study = [e async for e in log.find({"study_uids": ids["uid"]})]
    entries, total = await store.page(LogFilter(patient_id=corrected), 0, 500)
    assert total == len(of_study) > 10
    assert {e["_id"] for e in entries} == {e["_id"] for e in of_study}
    none, nothing = await store.page(LogFilter(patient_id="nobody"), 0, 500)
    assert (none, nothing) == ([], 0)
