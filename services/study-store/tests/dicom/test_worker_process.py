"""The real worker (`python -m studyshare.study_store worker`) and relay as subprocesses against
the real broker: a share with a message and a PACS department stores the message series and
forwards the study to a dcmtk storescp, on either blob store (PACS forwarding runs in the
worker: with GridFS it reads what the API stored, issue 17 point 2)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import DepartmentCreated, PacsEndpoint
from studyshare.contracts.events.share import RecipientRef
from studyshare.plumbing.eventstore import EventStore, envelope_for
from studyshare.plumbing.testing import publish_events, unique

from .conftest import write_study
from .test_dicomweb import upload
from .test_share_message import shared_envelope

pytestmark = pytest.mark.infra


@pytest.fixture
def study_store_process(service_processes, settings):
    service = unique("study-store")

    def start(command: str) -> subprocess.Popen:
        env = service_processes.env(
            settings.database_name,
            service,
            blob_backend=settings.blob_backend,
            blob_dir=str(settings.blob_dir),
            anonymization_secret=settings.anonymization_secret,
            forward_backoff_s="0.1",
        )
        argv = [sys.executable, "-m", "studyshare.study_store", command]
        return service_processes.start(argv, env, command)

    return start


async def publish_upstream(real_infra, envelopes) -> None:
    """Publish other services' events as their relays would."""
    await publish_events(real_infra, envelopes)


async def eventually(check, timeout: float = 150.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.25)
    return await check()


@pytest.mark.parametrize("blob_backend", ["directory", "gridfs"])
async def test_worker_stores_the_message_and_forwards_a_share_to_a_pacs(
    real_infra, dicom_app, study_store_process, pacs, tmp_path, blob_backend
):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    assert (await upload(dicom_app, files)).status_code == 200
    study_store_process("relay")
    study_store_process("worker")

    pacs_id = unique("dep")
    department = DepartmentCreated(
        department_id=pacs_id,
        name="Hospital PACS",
        kind="pacs",
        pacs=PacsEndpoint(ae_title="PACS", host="127.0.0.1", port=pacs.port),
        created_by="usr_admin",
    )
    await publish_upstream(
        real_infra,
        [
            envelope_for(
                department,
                aggregate_id=pacs_id,
                aggregate_version=1,
                actor=Actor(id="usr_admin"),
                correlation_id="c-dep",
            )
        ],
    )
    db = dicom_app.stores.db

    async def department_known():
        return await db["dicom_departments.g0.departments"].find_one({"_id": pacs_id})

    assert await eventually(department_known), "the worker keeps PACS endpoints"

    bucket = unique("bkt")
    share = shared_envelope(
        bucket,
        [study_uid],
        "Urgent: compare with 2023.",
        [RecipientRef(recipient_id=pacs_id, kind="department")],
    )
    await publish_upstream(real_infra, [share])
    store = EventStore(db)

    async def done():
        events = await store.all_events()
        types = [e.event_type for e in events]
        return "StudyMessageStored" in types and "StudyForwarded" in types and events

    events = await eventually(done)
    assert events, (tmp_path / "worker.log").read_text()[-3000:]
    forwarded = next(e for e in events if e.event_type == "StudyForwarded")
    assert forwarded.payload["destination_id"] == pacs_id
    assert forwarded.payload["instance_count"] == 2
    assert len(pacs.received()) == 2
    assert len([e for e in events if e.event_type == "StudyMessageStored"]) == 1
    if blob_backend == "gridfs":
        # the worker read the images and wrote the message series in GridFS, not on its disk
        assert await db["blobs.files"].count_documents({}) == 3
        assert not dicom_app.settings.blob_dir.exists()
