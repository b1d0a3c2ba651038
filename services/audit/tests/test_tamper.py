"""Tamper evidence on the real database (point 5): change, remove or reorder an entry straight
in the collection, and the verify command / route names the sequence number."""

from __future__ import annotations

import os
import subprocess
import sys

from studyshare.audit.adapters.store import AuditStore
from studyshare.plumbing.projection import GenerationPointer


async def entries_collection(db):
    return await GenerationPointer(db, "audit_log").collection("entries")


async def problems(db, chain: str = "study_log"):
    report = await AuditStore(db).verify()
    return [(p.seq, p.kind) for p in report[chain].problems]


async def test_untouched_log_verifies(story_db):
    db, story, _ = story_db
    report = await AuditStore(db).verify()
    assert report["study_log"].ok and report["study_log"].checked == len(story.events)


async def test_changed_entry_is_found_at_its_seq(story_db):
    db, *_ = story_db
    entries = await entries_collection(db)
    await entries.update_one({"seq": 12}, {"$set": {"payload.consecutive_failures": 0}})
    assert await problems(db) == [(12, "changed")]


async def test_removed_entry_is_found_at_its_seq(story_db):
    db, *_ = story_db
    entries = await entries_collection(db)
    await entries.delete_one({"seq": 9})
    found = await problems(db)
    assert found[0] == (9, "removed")
    assert {kind for _, kind in found} == {"removed"}


async def test_reordered_entries_are_found_at_their_seqs(story_db):
    db, *_ = story_db
    entries = await entries_collection(db)
    await entries.update_one({"seq": 20}, {"$set": {"seq": -1}})
    await entries.update_one({"seq": 21}, {"$set": {"seq": 20}})
    await entries.update_one({"seq": -1}, {"$set": {"seq": 21}})
    assert await problems(db) == [(20, "reordered"), (21, "reordered")]


async def test_audit_read_records_are_chained_too(story_db):
    db, _, ids = story_db
    store = AuditStore(db)
    await store.ensure_indexes()
    for n in range(4):
        await store.record_read(
            actor_id="usr_auditor",
            roles=["auditor"],
            route=f"/r{n}",
            query={},
            study_uid=ids["uid"],
        )
    assert await problems(db, "audit_reads") == []
    await db["audit_reads"].delete_one({"seq": 2})
    assert await problems(db, "audit_reads") == [(2, "removed")]


def run_verify(real_infra, db_name: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
        "STUDYSHARE_DATABASE": db_name,
        "STUDYSHARE_ENVIRONMENT": "test",
    }
    return subprocess.run(
        [sys.executable, "-m", "studyshare.audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_verify_command_exits_nonzero_and_names_the_seq(story_db, real_infra):
    db, *_ = story_db
    clean = run_verify(real_infra, db.name)
    assert clean.returncode == 0, clean.stderr
    entries = await entries_collection(db)
    await entries.update_one({"seq": 7}, {"$set": {"summary": "nothing happened"}})
    tampered = run_verify(real_infra, db.name)
    assert tampered.returncode == 1
    assert "study_log: seq 7 changed" in tampered.stderr
