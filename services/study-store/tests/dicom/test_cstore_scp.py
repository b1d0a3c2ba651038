"""The C-STORE receiver, run as `python -m studyshare.study_store scp`, fed by dcmtk's storescu."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from studyshare.contracts.envelope import Actor
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.infra import dcmtk, free_port, wait_for_port
from studyshare.plumbing.testing import stop_processes
from studyshare.study_store.adapters.blobstore import DirectoryBlobStore
from studyshare.study_store.adapters.instances import InstanceIndex
from studyshare.study_store.adapters.received import ReceivedJournal
from studyshare.study_store.service_layer.ingest import Ingest, Upload, parse_file
from studyshare.study_store.service_layer.received import keep_received

from .conftest import write_study

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def scp_database(real_infra):
    """One database for the module's SCP process (started once: it takes seconds)."""
    from pymongo import MongoClient

    name = f"t_scp_{uuid.uuid4().hex[:10]}"
    yield name
    with MongoClient(real_infra.mongo_url) as client:
        client.drop_database(name)


@pytest.fixture
async def scp_db(real_infra, scp_database):
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(real_infra.mongo_url, tz_aware=True)
    yield client[scp_database]
    await client.close()


class RunningSCP(NamedTuple):
    port: int
    blobs: Path
    process: subprocess.Popen


@contextmanager
def running_scp(
    real_infra, database: str, directory: Path, callers: dict[str, str], **settings: str
):
    """`python -m studyshare.study_store scp` with these calling AE titles (and further
    `STUDYSHARE_<NAME>` settings); its blobs and log (appended to) are under `directory`."""
    port = free_port()
    env = {
        **os.environ,
        "STUDYSHARE_ENVIRONMENT": "test",
        "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
        "STUDYSHARE_KAFKA_BOOTSTRAP": real_infra.kafka_bootstrap,
        "STUDYSHARE_DATABASE": database,
        "STUDYSHARE_BLOB_DIR": str(directory / "blobs"),
        "STUDYSHARE_SCP_PORT": str(port),
        "STUDYSHARE_SCP_AE_TITLE": "STUDYSHARE",
        "STUDYSHARE_SCP_CALLING_AE_DEPARTMENTS": json.dumps(callers),
        "STUDYSHARE_SCP_FLUSH_INSTANCES": "3",
        **{f"STUDYSHARE_{name.upper()}": value for name, value in settings.items()},
    }
    log = open(directory / "scp.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "studyshare.study_store", "scp"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, 60, proc)
        yield RunningSCP(port, directory / "blobs", proc)
    finally:
        stop_processes([proc], 10)
        log.close()


@pytest.fixture(scope="module")
def scp_process(real_infra, scp_database, tmp_path_factory):
    directory = tmp_path_factory.mktemp("scp")
    with running_scp(real_infra, scp_database, directory, {"MODALITY1": "dep_ct"}) as scp:
        yield scp


async def eventually(check, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.1)


def storescu(port: int, calling: str, files) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            dcmtk("storescu"),
            "-aet",
            calling,
            "-aec",
            "STUDYSHARE",
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )


def association(port: int, calling: str, called: str = "STUDYSHARE"):
    """An association request with pynetdicom (a refused one is `is_rejected`)."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title=called)


def refusal_reason(assoc) -> int:
    """The A-ASSOCIATE-RJ diagnostic: 0x03 calling, 0x07 called AE title not recognised."""
    assert assoc.is_rejected
    return assoc.acceptor.primitive.diagnostic


async def test_storescu_sends_two_studies_in_one_association_filed_under_the_ae_department(
    scp_process, scp_db, tmp_path
):
    port, blobs = scp_process.port, scp_process.blobs
    mongo_db = scp_db
    uid_a, files_a = write_study(tmp_path / "a", series=2, per_series=2)
    uid_b, files_b = write_study(tmp_path / "b", series=1, per_series=3, modality="MR")
    sent = storescu(port, "MODALITY1", [*files_a, *files_b])
    assert sent.returncode == 0, sent.stderr.decode()

    index = InstanceIndex(mongo_db)

    async def both_indexed():
        a, b = await index.study(uid_a), await index.study(uid_b)
        return a and b and a["instance_count"] == 4 and b["instance_count"] == 3 and (a, b)

    assert await eventually(both_indexed), "both studies indexed after the association"
    store = EventStore(mongo_db)
    events_a, events_b = await store.load(uid_a), await store.load(uid_b)
    assert events_a[0].event_type == "StudyReceived"
    received = events_a[0].payload
    assert received["department_id"] == "dep_ct"
    assert received["received_via"] == "c-store"
    assert received["owner_id"] is None
    assert received["patient_initials"] == "J.D."
    assert events_b[0].payload["upload_batch_id"] == received["upload_batch_id"], (
        "one association, one upload batch"
    )
    assert events_b[0].payload["modalities"] == ["MR"]
    # flushes every 3 instances: later batches of the same association add instances
    total = sum(e.payload.get("instance_count", 0) for e in events_a + events_b)
    assert total == 7
    assert all(e.event_type in ("StudyReceived", "StudyInstancesAdded") for e in events_a)
    doc = await mongo_db["dicom_instances"].find_one({"study_uid": uid_a})
    assert (blobs / doc["path"]).read_bytes()[128:132] == b"DICM"


async def test_an_unknown_calling_ae_title_is_refused(scp_process, scp_db, tmp_path):
    mongo_db = scp_db
    uid, files = write_study(tmp_path / "a", series=1, per_series=1)
    sent = storescu(scp_process.port, "STRANGER", files)
    assert sent.returncode != 0
    assert await InstanceIndex(mongo_db).study(uid) is None
    assert await EventStore(mongo_db).load(uid) == []


async def test_a_known_instance_with_other_content_is_refused_never_replaced(
    scp_process, scp_db, tmp_path
):
    """Issue 15, point 7: a second C-STORE of a stored SOP Instance UID with other content is
    refused (0x0111, logged); the stored file and its index stay as they were."""

    port, blobs = scp_process.port, scp_process.blobs
    uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    assert storescu(port, "MODALITY1", files).returncode == 0
    index = InstanceIndex(scp_db)

    async def indexed():
        study = await index.study(uid)
        return study and study["instance_count"] == 2

    assert await eventually(indexed)
    sop_uid = str(dcmread(files[0]).SOPInstanceUID)
    before = await scp_db["dicom_instances"].find_one({"_id": sop_uid})
    stored = (blobs / before["path"]).read_bytes()
    assert before["sha256"] == hashlib.sha256(stored).hexdigest()
    ds = dcmread(files[0])
    ds.PatientName = "Mallory^Eve"
    forged = tmp_path / "forged.dcm"
    ds.save_as(forged)
    storescu(port, "MODALITY1", [forged, files[0]])
    await asyncio.sleep(1.0)  # the association's batch is flushed when it ends

    after = await scp_db["dicom_instances"].find_one({"_id": sop_uid})
    assert after == before
    assert (blobs / after["path"]).read_bytes() == stored
    assert b"Mallory" not in b"".join(p.read_bytes() for p in blobs.rglob("*.dcm"))
    assert (await index.study(uid))["instance_count"] == 2
    events = await EventStore(scp_db).load(uid)
    assert [e.event_type for e in events] == ["StudyReceived"]
    # neither the refused object nor the one sent again is left noted as unindexed
    assert await scp_db["scp_received"].count_documents({"_id": {"$regex": f"^{uid}/"}}) == 0


async def test_without_calling_ae_titles_the_receiver_refuses_every_association(
    real_infra, scp_db, tmp_path
):
    """Fail closed: an empty `scp_calling_ae_departments` admits nobody (it once admitted
    everybody, filing their studies under no department and no owner)."""
    with running_scp(real_infra, scp_db.name, tmp_path, {}) as scp:
        for calling in ("MODALITY1", "ANYBODY"):
            assoc = await asyncio.to_thread(association, scp.port, calling)
            assert not assoc.is_established
            assert refusal_reason(assoc) == 0x03, "calling AE title not recognised"
    assert "scp.refusing_every_caller" in (tmp_path / "scp.log").read_text()


async def test_an_association_to_another_called_ae_title_is_refused(scp_process, scp_db):
    port = scp_process.port
    wrong = await asyncio.to_thread(association, port, "MODALITY1", "WHATEVER")
    assert not wrong.is_established
    assert refusal_reason(wrong) == 0x07, "called AE title not recognised"
    ours = await asyncio.to_thread(association, port, "MODALITY1", "STUDYSHARE")
    assert ours.is_established
    ours.release()


def test_a_pdu_longer_than_the_receiver_reads_ends_the_connection(scp_process):
    """pynetdicom reads a PDU whole, whatever length its header claims: a stranger could have
    the receiver fill gigabytes before its AE title was looked at. Now the connection ends."""
    sent, chunk = 0, bytes(64 * 1024)
    with socket.create_connection(("127.0.0.1", scp_process.port), timeout=10) as conn:
        conn.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFF_FFF0))  # an A-ASSOCIATE-RQ of 4 GiB
        with pytest.raises(OSError):  # reset, or a broken pipe
            while sent < 256 << 20:
                conn.sendall(chunk)
                sent += len(chunk)
    assert sent < 16 << 20, f"{sent} bytes were taken in"
    log = (scp_process.blobs.parent / "scp.log").read_text()
    assert "scp.pdu_too_long" in log


async def test_an_instance_in_another_studys_series_is_refused(scp_process, scp_db, tmp_path):
    """0x0124, as STOW-RS: a series belongs to one study, whoever sends the other."""
    port = scp_process.port
    uid_a, files_a = write_study(tmp_path / "a", series=1, per_series=1)
    assert storescu(port, "MODALITY1", files_a).returncode == 0
    index = InstanceIndex(scp_db)
    assert await eventually(lambda: index.study(uid_a))
    uid_b, files_b = write_study(tmp_path / "b", series=1, per_series=1)
    intruder = dcmread(files_b[0])
    intruder.SeriesInstanceUID = dcmread(files_a[0]).SeriesInstanceUID

    def send() -> int:
        assoc = association(port, "MODALITY1")
        try:
            return int(assoc.send_c_store(intruder).Status)
        finally:
            assoc.release()

    assert await asyncio.to_thread(send) == 0x0124
    await asyncio.sleep(1.0)  # the association's batch is flushed when it ends
    assert (await index.study(uid_a))["instance_count"] == 1
    assert await index.study(uid_b) is None


def send_each(port: int, datasets, release: bool = True) -> tuple[list[int], object]:
    """C-STORE each data set on one association; the statuses, and the association (left
    open without `release`)."""
    assoc = association(port, "MODALITY1")
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(ds).Status) for ds in datasets]
    if release:
        assoc.release()
    return statuses, assoc


async def test_an_object_the_store_could_not_keep_is_not_left_noted(scp_db, tmp_path):
    """The store, the journal and the lookup of what is stored go at once: when the store
    fails (no success goes out), the object's note goes too, so that no recovery pass looks
    for an object never kept."""

    class FullDisk(DirectoryBlobStore):
        async def import_file(self, path, key):
            await asyncio.sleep(0.05)  # after the journal noted it
            raise OSError(28, "No space left on device")

    journal = ReceivedJournal(scp_db)
    _, files = write_study(tmp_path / "study", series=1, per_series=1)
    content = files[0].read_bytes()
    parsed = parse_file(files[0], hashlib.sha256(content).hexdigest(), len(content))
    upload = Upload(via="c-store", actor=Actor(kind="service", id="ae:MODALITY1"))
    ingest = Ingest(scp_db, FullDisk(tmp_path / "blobs"))

    with pytest.raises(OSError, match="No space"):
        await keep_received(ingest, journal, upload, files[0], parsed)

    noted = await scp_db["scp_received"].count_documents({"upload.batch_id": upload.batch_id})
    assert noted == 0


async def test_a_recovery_pass_takes_an_upload_batch_whole(scp_db):
    """An upload batch with a note old enough is recovered with all its notes, those noted
    later too: a pass that looked between two notes of one association (50 ms apart) once
    indexed them as two uploads (`StudyReceived`, then `StudyInstancesAdded`)."""
    journal = ReceivedJournal(scp_db)
    await journal.ensure_indexes()
    slow, fresh = (f"bat_{uuid.uuid4().hex}" for _ in range(2))
    notes = {slow: ["a/1.dcm", "a/2.dcm", "a/3.dcm"], fresh: ["b/1.dcm"]}
    for batch_id, keys in notes.items():
        for key in keys:
            await journal.note(f"{batch_id}/{key}", "0" * 64, 10, {"batch_id": batch_id})
    first = f"{slow}/a/1.dcm"
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    await scp_db["scp_received"].update_one({"_id": first}, {"$set": {"received_at": long_ago}})

    batches = [
        b for b in await journal.unindexed(timedelta(minutes=5)) if b.upload["batch_id"] in notes
    ]

    assert [(b.upload["batch_id"], [n.key for n in b.notes]) for b in batches] == [
        (slow, [f"{slow}/{key}" for key in notes[slow]])
    ]
    await journal.settle(f"{batch_id}/{key}" for batch_id, keys in notes.items() for key in keys)


@pytest.mark.parametrize("backend", ["directory", "gridfs"])
async def test_what_a_receiver_acknowledged_before_it_was_killed_is_indexed_after_it(
    real_infra, scp_db, tmp_path, backend
):
    """A C-STORE success tells the sender the object is ours, and it deletes its copy. The
    receiver indexes an association's objects in batches (every `scp_flush_instances`, and
    at its end): killed in between, it once left them stored but never indexed, so no one
    could ever open them."""
    uid, files = write_study(tmp_path / "study", series=1, per_series=2)
    callers = {"MODALITY1": "dep_ct"}
    with running_scp(real_infra, scp_db.name, tmp_path, callers, blob_backend=backend) as scp:
        statuses, assoc = await asyncio.to_thread(
            send_each, scp.port, [dcmread(f) for f in files], False
        )
        assert statuses == [0, 0], "both acknowledged (3 make a batch: none indexed yet)"
        scp.process.kill()
        scp.process.wait()
        assoc.abort()
    index = InstanceIndex(scp_db)
    assert await index.study(uid) is None, "the killed receiver indexed nothing"

    with running_scp(
        real_infra, scp_db.name, tmp_path, callers, blob_backend=backend, scp_recover_after_s="1"
    ):

        async def indexed():
            study = await index.study(uid)
            return study and study["instance_count"] == 2

        assert await eventually(indexed), "the next receiver indexes what was acknowledged"
    events = await EventStore(scp_db).load(uid)
    assert [e.event_type for e in events] == ["StudyReceived"]
    assert events[0].payload["department_id"] == "dep_ct"
    assert events[0].payload["received_via"] == "c-store"
    assert events[0].payload["instance_count"] == 2


async def test_an_instance_that_lost_a_race_takes_none_of_its_association_with_it(
    scp_process, scp_db, tmp_path
):
    """Two associations send one SOP Instance UID with other content at once: both pass the
    check (neither is indexed yet) and are acknowledged; the first indexed wins. The loser's
    batch once failed whole, and every other object it had acknowledged was lost."""
    port = scp_process.port
    uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    contested, other = dcmread(files[0]), dcmread(files[1])
    rival = dcmread(files[0])
    rival.SeriesDescription = "the rival's content"
    statuses, slow = await asyncio.to_thread(send_each, port, [contested, other], False)
    assert statuses == [0, 0]
    assert (await asyncio.to_thread(send_each, port, [rival]))[0] == [0]
    index = InstanceIndex(scp_db)

    async def rival_indexed():
        return await scp_db["dicom_instances"].find_one({"_id": contested.SOPInstanceUID})

    winner = await eventually(rival_indexed)
    assert winner, "the rival's association ended first: its instance is indexed"
    await asyncio.to_thread(slow.release)

    async def both_indexed():
        study = await index.study(uid)
        return study and study["instance_count"] == 2

    assert await eventually(both_indexed, 10), "the loser's other instance is indexed too"
    assert await scp_db["dicom_instances"].find_one({"_id": contested.SOPInstanceUID}) == winner


async def test_a_batch_recovery_cannot_index_is_held_and_the_later_ones_are_indexed(
    scp_db, tmp_path
):
    """A recovery pass took the unindexed batches oldest first and ended at the first that
    failed (metadata MongoDB refused, say): every later pass failed on the same batch, and no
    batch after it was ever indexed, though a modality had been told it was stored. Now that
    batch is held (its notes marked, logged, left out of later passes) and the pass goes on;
    an object that cannot be parsed is held alone."""
    from pymongo.errors import DocumentTooLarge
    from structlog.testing import capture_logs

    from studyshare.study_store.adapters.blobstore import key_for
    from studyshare.study_store.service_layer.received import journal_upload, recover

    class RefusingIngest(Ingest):
        """The database refuses the documents of one upload batch."""

        refused: str = ""

        async def index_batch(self, upload, parsed, paths, *args, **kwargs):
            if upload.batch_id == self.refused:
                raise DocumentTooLarge("BSON document too large (23488102 bytes)")
            return await super().index_batch(upload, parsed, paths, *args, **kwargs)

    ingest = RefusingIngest(scp_db, DirectoryBlobStore(tmp_path / "blobs"))
    journal = ReceivedJournal(scp_db)
    await journal.ensure_indexes()
    _, files = write_study(tmp_path / "study", series=2, per_series=1)
    stuck, later = (Upload(via="c-store", actor=Actor(kind="service", id="ae:M1")) for _ in "ab")
    ingest.refused = stuck.batch_id
    keys = {}
    for upload, path in ((stuck, files[0]), (later, files[1])):
        parsed = parse_file(
            path, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size
        )
        f = parsed.facts
        keys[upload.batch_id] = key = key_for(
            f.study_uid, f.series_uid, f.sop_instance_uid, parsed.sha256
        )
        await ingest.blobs.import_file(path, key)
        await journal.note(key, parsed.sha256, parsed.size, journal_upload(upload))
    garbled_file = tmp_path / "garbled.dcm"  # stored, but no DICOM (any more)
    garbled_file.write_bytes(b"not a DICOM object" * 10)
    garbled = keys[later.batch_id].replace(".dcm", ".garbled.dcm")
    await ingest.blobs.import_file(garbled_file, garbled)
    await journal.note(garbled, "0" * 64, 180, journal_upload(later))
    for minutes, batch_id in ((120, stuck.batch_id), (110, later.batch_id)):  # stuck: oldest
        await scp_db["scp_received"].update_many(
            {"upload.batch_id": batch_id},
            {"$set": {"received_at": datetime.now(UTC) - timedelta(minutes=minutes)}},
        )

    with capture_logs() as logs:
        recovered = await asyncio.wait_for(recover(ingest, journal, timedelta(hours=1)), 60)

    assert recovered == 1
    later_sop = dcmread(files[1]).SOPInstanceUID
    assert await scp_db["dicom_instances"].find_one({"_id": later_sop}), "the later is indexed"
    assert not await scp_db["dicom_instances"].find_one({"_id": dcmread(files[0]).SOPInstanceUID})
    held = {note["key"]: note for note in await journal.held()}
    assert set(held) >= {keys[stuck.batch_id], garbled}
    assert held[keys[stuck.batch_id]]["error"].startswith("DocumentTooLarge: BSON document")
    assert keys[later.batch_id] not in held, "indexed, its note settled"
    assert not [
        b
        for b in await journal.unindexed(timedelta(hours=1))
        if b.upload["batch_id"] in (stuck.batch_id, later.batch_id)
    ], "the held notes are left out of later passes"
    unindexable = [e for e in logs if e["event"] == "scp.received_unindexable"]
    assert {(e["batch_id"], e["error"]) for e in unindexable} == {
        (stuck.batch_id, "DocumentTooLarge"),
        (later.batch_id, "InvalidDicomError"),
    }
    await journal.settle(held)
