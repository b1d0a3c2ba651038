"""Nothing the C-STORE receiver acknowledged is lost.

A C-STORE success tells the sender the object is ours: it may delete its copy. The receiver
stores each object before it answers, but indexes an association's objects in batches (every
`scp_flush_instances`, and when the association ends). So each object is noted in the received
journal before its success goes out, and its note goes once it is indexed. A note older than
`scp_recover_after_s` names an object whose receiver died (or could not index it): any receiver
indexes it from the blob store, in its own upload batch. Indexing twice changes nothing (an
indexed instance stays as it is), so a batch a live receiver is still filling may be indexed
early, never wrongly.

An object that lost a race (another association indexed other content under its SOP Instance
UID first) is dropped alone, logged: a stored instance is never replaced, and the batch's
other objects are indexed.

A batch the recovery pass cannot index (its metadata refused by the database, say) is held:
its notes stay in the journal, marked `held_at` with the `error`, no pass takes them again,
and `scp.received_unindexable` is logged (batch id, the error's class and message); an object
that cannot be parsed any more is held alone, its batch's others indexed. The pass goes on
with the next batches, so one such batch never keeps the ones after it unindexed. A failure of
the database or of the blob store itself (a lost connection, a disk error) holds nothing: the
pass ends, the next one tries again. Held notes, for an operator, in mongosh:

    db.scp_received.find({held_at: {$exists: true}}, {upload: 0})

(or `ReceivedJournal.held()`); once the cause is mended, a batch goes back to recovery with
`db.scp_received.updateMany({"upload.batch_id": "<batch id>"}, {$unset: {held_at: 1, error: 1}})`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bson.errors import InvalidDocument
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    ExecutionTimeout,
)

from studyshare.contracts.envelope import Actor
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.unit_of_work import transient
from studyshare.study_store.adapters.blobstore import BlobMissing, key_for
from studyshare.study_store.adapters.received import ReceivedJournal, Unindexed
from studyshare.study_store.domain.exceptions import InstanceAlreadyStored
from studyshare.study_store.service_layer.ingest import Ingest, Parsed, Upload, parse_stored

log = get_logger(__name__)


def journal_upload(upload: Upload) -> dict[str, Any]:
    """What the journal keeps of an upload (to index its objects later in the same batch)."""
    return {
        "via": upload.via,
        "actor": upload.actor.model_dump(exclude_none=True),
        "department_id": upload.department_id,
        "owner_id": upload.owner_id,
        "batch_id": upload.batch_id,
    }


async def keep_received(
    ingest: Ingest, journal: ReceivedJournal, upload: Upload, received: Path, parsed: Parsed
) -> tuple[str, str | None]:
    """Store a received object and note it in the journal (both before its success goes out)
    while reading the digest stored under its SOP Instance UID, all three at once: (its key,
    that digest). When one is stored (the object is not kept) the note goes, and so does the
    object, unless it is the stored one; when the store or the journal fails, the note goes."""
    f = parsed.facts
    key = key_for(f.study_uid, f.series_uid, f.sop_instance_uid, parsed.sha256)
    try:
        async with asyncio.TaskGroup() as tasks:
            stored = tasks.create_task(ingest.stored_digests([f.sop_instance_uid]))
            tasks.create_task(ingest.blobs.import_file(received, key))
            tasks.create_task(journal.note(key, parsed.sha256, parsed.size, journal_upload(upload)))
    except BaseException as failed:
        await journal.settle([key])
        if isinstance(failed, BaseExceptionGroup):
            raise failed.exceptions[0] from None  # what failed, not the group around it
        raise
    digest = stored.result().get(f.sop_instance_uid)
    if digest is not None:
        await journal.settle([key])
        if digest != parsed.sha256:  # named by its own digest: never the stored object
            await ingest.blobs.remove(key)
    return key, digest


def _upload(fields: dict[str, Any]) -> Upload:
    return Upload(**{**fields, "actor": Actor(**fields["actor"])})


async def index_received(
    ingest: Ingest,
    journal: ReceivedJournal,
    upload: Upload,
    parsed: Sequence[Parsed],
    paths: dict[str, str],
) -> None:
    """Index acknowledged objects and settle their notes; one that lost a race goes alone."""
    remaining = list(parsed)
    while True:
        try:
            await ingest.index_batch(upload, remaining, paths)
            break
        except InstanceAlreadyStored:
            stored = await ingest.stored_digests([p.facts.sop_instance_uid for p in remaining])
            lost = [
                p for p in remaining if stored.get(p.facts.sop_instance_uid) not in (None, p.sha256)
            ]
            if not lost:
                raise
            log.warning(
                "scp.instance_lost_race",
                batch_id=upload.batch_id,
                sop_instance_uids=[p.facts.sop_instance_uid for p in lost][:20],
            )
            for p in lost:  # named by its own digest: never the winner's object
                await ingest.blobs.remove(paths[p.facts.sop_instance_uid])
            remaining = [p for p in remaining if p not in lost]
    await journal.settle(paths[p.facts.sop_instance_uid] for p in parsed)


async def recover(ingest: Ingest, journal: ReceivedJournal, older_than: timedelta) -> int:
    """Index what was noted more than `older_than` ago and not indexed since; how many. What
    cannot be indexed is held (see the module's docstring) and the pass goes on."""
    recovered = 0
    while batches := await journal.unindexed(older_than):
        for batch in batches:
            recovered += await _recover_batch(ingest, journal, batch)
    return recovered


async def _recover_batch(ingest: Ingest, journal: ReceivedJournal, batch: Unindexed) -> int:
    batch_id = batch.upload.get("batch_id")
    parsed, paths, held = [], {}, set()
    for note in batch.notes:
        try:
            p = await asyncio.to_thread(
                parse_stored, ingest.blobs, note.key, note.sha256, note.size
            )
        except BlobMissing:
            log.error("scp.received_object_missing", key=note.key)
            continue
        except Exception as exc:
            if _not_the_batchs(exc):
                raise
            await _hold(journal, batch_id, [note.key], exc)
            held.add(note.key)
            continue
        parsed.append(p)
        paths[p.facts.sop_instance_uid] = note.key
    rest = [note.key for note in batch.notes if note.key not in held]
    try:
        await index_received(ingest, journal, _upload(batch.upload), parsed, paths)
    except Exception as exc:
        if _not_the_batchs(exc):
            raise
        await _hold(journal, batch_id, rest, exc)
        return 0
    await journal.settle(rest)
    log.warning("scp.received_recovered", batch_id=batch_id, instances=len(parsed))
    return len(parsed)


def _not_the_batchs(exc: Exception) -> bool:
    """A failure of the database or the blob store, not of what a batch holds: nothing is held
    for it (the pass ends; the next one tries again)."""
    if isinstance(exc, ConnectionFailure | ExecutionTimeout) or transient(exc):
        return True
    # an OS error of the disk (a parse error of a cut file is an OSError without errno)
    return isinstance(exc, OSError) and exc.errno is not None


async def _hold(
    journal: ReceivedJournal, batch_id: str | None, keys: list[str], exc: Exception
) -> None:
    error, message = type(exc).__name__, _message(exc)
    await journal.hold(keys, f"{error}: {message}")
    log.error(
        "scp.received_unindexable",
        batch_id=batch_id,
        objects=len(keys),
        error=error,
        message=message,
    )


def _message(exc: Exception) -> str:
    """What went wrong, without the values a write error carries (patient data)."""
    if isinstance(exc, BulkWriteError):
        codes = sorted({str(e.get("code")) for e in exc.details.get("writeErrors", [])})
        return f"write errors {', '.join(codes)}"
    if isinstance(exc, InvalidDocument) and not isinstance(exc, DocumentTooLarge):
        return "a value could not be encoded"  # its message shows the value
    return str(exc).split("\n", 1)[0][:200]
