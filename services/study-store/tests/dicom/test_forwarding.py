"""PACS and RSW forwarding by C-STORE, against a real dcmtk storescp as the receiving PACS."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import DepartmentCreated, PacsEndpoint
from studyshare.plumbing.eventstore import EventStore, envelope_for
from studyshare.plumbing.infra import free_port
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.plumbing.testing import unique
from studyshare.study_store.adapters.projections import DepartmentEndpoints
from studyshare.study_store.service_layer.reactions import TransferReactions

from .conftest import StoreSCP, write_study
from .test_dicomweb import upload

pytestmark = pytest.mark.infra

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


async def create_department(
    db, department_id: str, kind: str = "pacs", pacs_port=None, rsw_port=None
) -> None:
    event = DepartmentCreated(
        department_id=department_id,
        name=f"{kind} {department_id}",
        kind=kind,  # type: ignore[arg-type]
        pacs=PacsEndpoint(ae_title="PACS", host="127.0.0.1", port=pacs_port) if pacs_port else None,
        rsw=PacsEndpoint(ae_title="PACS", host="127.0.0.1", port=rsw_port) if rsw_port else None,
        created_by="usr_admin",
    )
    envelope = envelope_for(
        event,
        aggregate_id=department_id,
        aggregate_version=1,
        actor=Actor(id="usr_admin"),
        correlation_id="c",
    )
    await ProjectionRunner(DepartmentEndpoints(), db).apply_batch([envelope])


async def run_transfers(dapp) -> None:
    """What the worker does with study.events (here fed from the event store directly)."""
    runner = dapp.app.state.transfer_runner if hasattr(dapp.app.state, "transfer_runner") else None
    if runner is None:
        runner = ProjectionRunner(TransferReactions(dapp.settings), dapp.stores.db)
        dapp.app.state.transfer_runner = runner
    while await runner.apply_batch(await EventStore(dapp.stores.db).all_events()):
        pass


async def test_forward_to_a_pacs_by_c_store(dicom_app, pacs, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=2, per_series=2)
    assert (await upload(dicom_app, files)).status_code == 200
    pacs_id = unique("dep")
    await create_department(dicom_app.stores.db, pacs_id, pacs_port=pacs.port)
    dicom_app.access.allow("usr_fw", study_uid, download=True, via="grant")
    headers = dicom_app.tokens.user("usr_fw", "physician")

    listed = await dicom_app.client.get("/api/pacs", headers=headers)
    assert {"pacs_id": pacs_id, "name": f"pacs {pacs_id}", "ae_title": "PACS"} in listed.json()

    response = await dicom_app.client.post(
        f"/api/studies/{study_uid}/forward", json={"pacs_id": pacs_id}, headers=headers
    )
    assert response.status_code == 202, response.text
    transfer = response.json()
    assert transfer["transfer_id"].startswith("trf_")
    assert transfer["state"] == "pending" and transfer["requested_by"] == "usr_fw"
    assert "forward" in dicom_app.access_log.actions(study_uid)

    await run_transfers(dicom_app)
    received = pacs.received()
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(
        str(dcmread(f).SOPInstanceUID) for f in files
    )
    assert all(str(ds.PatientName) == "Doe^Jane" for ds in received)
    rows = (
        await dicom_app.client.get(f"/api/studies/{study_uid}/transfers", headers=headers)
    ).json()
    assert [(r["state"], r["attempts"], r["destination_id"]) for r in rows] == [
        ("forwarded", 1, pacs_id)
    ]
    events = await EventStore(dicom_app.stores.db).load(transfer["transfer_id"])
    assert [e.event_type for e in events] == ["StudyForwardRequested", "StudyForwarded"]
    assert events[1].payload["instance_count"] == 4


async def test_a_failed_forward_retries_with_backoff_then_resend_delivers(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    assert (await upload(dicom_app, files)).status_code == 200
    port = free_port()  # nothing listens here yet
    pacs_id = unique("dep")
    await create_department(dicom_app.stores.db, pacs_id, pacs_port=port)
    dicom_app.access.allow("usr_fw", study_uid, download=True, via="department")
    headers = dicom_app.tokens.user("usr_fw", "department_staff")
    transfer_id = (
        await dicom_app.client.post(
            f"/api/studies/{study_uid}/forward", json={"pacs_id": pacs_id}, headers=headers
        )
    ).json()["transfer_id"]
    await run_transfers(dicom_app)
    events = await EventStore(dicom_app.stores.db).load(transfer_id)
    failures = [e.payload for e in events if e.event_type == "StudyForwardFailed"]
    assert [(f["attempts"], f["final"]) for f in failures] == [(1, False), (2, True)]
    assert "failed" in failures[0]["reason"]
    row = (
        await dicom_app.client.get(f"/api/studies/{study_uid}/transfers", headers=headers)
    ).json()[0]
    assert row["state"] == "failed" and row["last_error"]

    scp = StoreSCP(port, tmp_path / "late-pacs").start()
    try:
        resent = await dicom_app.client.post(
            f"/api/studies/{study_uid}/transfers/{transfer_id}/resend", headers=headers
        )
        assert resent.status_code == 202, resent.text
        assert resent.json()["state"] == "pending" and resent.json()["rounds"] == 2
        again = await dicom_app.client.post(
            f"/api/studies/{study_uid}/transfers/{transfer_id}/resend", headers=headers
        )
        assert again.status_code == 409
        assert again.json()["rule"] == "TransferInProgress"
        await run_transfers(dicom_app)
        assert len(scp.received()) == 2
    finally:
        scp.stop()
    row = (
        await dicom_app.client.get(f"/api/studies/{study_uid}/transfers", headers=headers)
    ).json()[0]
    assert row["state"] == "forwarded" and row["rounds"] == 2


async def test_forward_needs_download_permission_and_a_known_pacs(dicom_app, pacs, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=1)
    assert (await upload(dicom_app, files)).status_code == 200
    radiology = unique("dep")
    await create_department(dicom_app.stores.db, radiology, kind="radiology")
    dicom_app.access.allow("usr_viewer", study_uid, download=False, via="grant")
    dicom_app.access.allow("usr_fw", study_uid, download=True, via="grant")
    viewer = dicom_app.tokens.user("usr_viewer", "physician")
    refused = await dicom_app.client.post(
        f"/api/studies/{study_uid}/forward", json={"pacs_id": radiology}, headers=viewer
    )
    assert refused.status_code == 403 and refused.json()["rule"] == "ForwardNotAllowed"
    forwarder = dicom_app.tokens.user("usr_fw", "physician")
    unknown = await dicom_app.client.post(
        f"/api/studies/{study_uid}/forward", json={"pacs_id": radiology}, headers=forwarder
    )
    assert unknown.status_code == 404 and unknown.json()["rule"] == "UnknownPacs"
    assert await EventStore(dicom_app.stores.db).all_events(aggregate_type="Transfer") == []


async def test_an_anonymized_share_forwards_anonymized_copies(dicom_app, pacs, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    assert (await upload(dicom_app, files)).status_code == 200
    pacs_id = unique("dep")
    await create_department(dicom_app.stores.db, pacs_id, pacs_port=pacs.port)
    dicom_app.access.allow(
        "usr_anon", study_uid, download=True, via="grant", anonymized=True, anonymous_number="77"
    )
    headers = dicom_app.tokens.user("usr_anon", "physician")
    response = await dicom_app.client.post(
        f"/api/studies/{study_uid}/forward", json={"pacs_id": pacs_id}, headers=headers
    )
    assert response.json()["anonymized"] is True
    await run_transfers(dicom_app)
    received = pacs.received()
    assert len(received) == 2
    for ds in received:
        assert str(ds.PatientName) == "Anonymous^77"
        assert not ds.get("PatientBirthDate") and not ds.get("AccessionNumber")
        assert ds.StudyInstanceUID != study_uid, "UIDs remapped for the share (PS3.15 Annex E)"
        assert ds.PatientIdentityRemoved == "YES"


def write_report(image: Path, directory: Path) -> Path:
    """A Basic Text SR (a report) in its own series of the study of `image`."""
    ds = dcmread(image)
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


async def test_a_resend_after_the_access_narrowed_sends_nothing_more_than_it_allows(
    dicom_app, pacs, tmp_path
):
    study_uid, images = write_study(tmp_path / "a", series=1, per_series=2)
    files = [*images, write_report(images[0], tmp_path / "a")]
    assert (await upload(dicom_app, files)).status_code == 200
    pacs_id = unique("dep")
    await create_department(dicom_app.stores.db, pacs_id, pacs_port=pacs.port)
    dicom_app.access.allow(
        "usr_fw", study_uid, download=True, via="grant", bucket_id="bkt_clear", report="read"
    )
    headers = dicom_app.tokens.user("usr_fw", "physician")
    transfer_id = (
        await dicom_app.client.post(
            f"/api/studies/{study_uid}/forward", json={"pacs_id": pacs_id}, headers=headers
        )
    ).json()["transfer_id"]
    await run_transfers(dicom_app)
    first = pacs.received()
    assert [str(ds.SOPClassUID) for ds in first].count(BASIC_TEXT_SR) == 1 and len(first) == 3
    assert all(str(ds.PatientName) == "Doe^Jane" for ds in first)
    for received in pacs.directory.iterdir():
        received.unlink()

    # the clear share is revoked; an anonymized share (no report) with download remains
    dicom_app.access.allow(
        "usr_fw",
        study_uid,
        download=True,
        via="grant",
        bucket_id="bkt_anon",
        anonymized=True,
        anonymous_number="77",
        report="none",
    )
    resent = await dicom_app.client.post(
        f"/api/studies/{study_uid}/transfers/{transfer_id}/resend", headers=headers
    )
    await run_transfers(dicom_app)
    again = pacs.received()
    assert not [ds for ds in again if str(ds.PatientName) == "Doe^Jane"], "sent in the clear"
    assert not [ds for ds in again if str(ds.SOPClassUID) == BASIC_TEXT_SR], "report sent"
    assert resent.status_code == 403, resent.text
    assert resent.json()["rule"] == "AccessChangedSinceTransfer"
    assert "request a new transfer" in resent.json()["detail"]
    events = await EventStore(dicom_app.stores.db).load(transfer_id)
    assert [e.event_type for e in events] == ["StudyForwardRequested", "StudyForwarded"]

    # a new transfer goes as the anonymized share allows: images only, anonymized
    response = await dicom_app.client.post(
        f"/api/studies/{study_uid}/forward", json={"pacs_id": pacs_id}, headers=headers
    )
    assert response.status_code == 202 and response.json()["anonymized"] is True
    await run_transfers(dicom_app)
    anonymized = pacs.received()
    assert len(anonymized) == 2
    assert all(str(ds.PatientName) == "Anonymous^77" for ds in anonymized)


async def test_rsw_receives_new_studies_with_a_status_per_study_and_a_resend(
    dicom_app, pacs, tmp_path
):
    department = unique("dep")
    await create_department(dicom_app.stores.db, department, kind="radiology", rsw_port=pacs.port)
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    assert (await upload(dicom_app, files, department=department)).status_code == 200
    await run_transfers(dicom_app)
    assert len(pacs.received()) == 2, "sent to RSW on arrival"

    dicom_app.access.allow("usr_staff", study_uid, via="department")
    headers = dicom_app.tokens.user("usr_staff", "department_staff", department_ids=[department])
    status = (await dicom_app.client.get(f"/api/studies/{study_uid}/rsw", headers=headers)).json()
    assert status["department_id"] == department
    assert status["transfer"]["state"] == "forwarded"
    assert status["transfer"]["destination_kind"] == "rsw"

    resent = await dicom_app.client.post(f"/api/studies/{study_uid}/rsw", headers=headers)
    assert resent.status_code == 202
    assert resent.json()["transfer"]["state"] == "pending"
    await run_transfers(dicom_app)
    status = (await dicom_app.client.get(f"/api/studies/{study_uid}/rsw", headers=headers)).json()
    assert status["transfer"]["state"] == "forwarded" and status["transfer"]["rounds"] == 2

    dicom_app.access.allow("usr_recipient", study_uid, via="grant")
    recipient = dicom_app.tokens.user("usr_recipient", "physician")
    refused = await dicom_app.client.post(f"/api/studies/{study_uid}/rsw", headers=recipient)
    assert refused.status_code == 403 and refused.json()["rule"] == "RswOnlyForDepartment"


async def test_instances_added_after_the_rsw_send_follow_the_study_there(dicom_app, pacs, tmp_path):
    department = unique("dep")
    await create_department(dicom_app.stores.db, department, kind="radiology", rsw_port=pacs.port)
    _study_uid, files = write_study(tmp_path / "a", series=2, per_series=2)
    assert (await upload(dicom_app, files[:2], department=department)).status_code == 200
    await run_transfers(dicom_app)
    assert len(pacs.received()) == 2
    assert (await upload(dicom_app, files[2:], department=department)).status_code == 200
    await run_transfers(dicom_app)
    assert sorted(str(ds.SOPInstanceUID) for ds in pacs.received()) == sorted(
        str(dcmread(f).SOPInstanceUID) for f in files
    )


async def test_replaying_the_transfer_reactions_sends_nothing_again(dicom_app, pacs, tmp_path):
    department = unique("dep")
    await create_department(dicom_app.stores.db, department, kind="radiology", rsw_port=pacs.port)
    _study_uid, files = write_study(tmp_path / "a", series=2, per_series=2)
    assert (await upload(dicom_app, files[:2], department=department)).status_code == 200
    await run_transfers(dicom_app)
    assert (await upload(dicom_app, files[2:], department=department)).status_code == 200
    await run_transfers(dicom_app)
    store = EventStore(dicom_app.stores.db)
    before = len(await store.all_events(aggregate_type="Transfer"))
    replay = ProjectionRunner(TransferReactions(dicom_app.settings), dicom_app.stores.db)
    replay.projection.name = "dicom_transfers_replay"  # type: ignore[misc]
    await replay.apply_batch(await store.all_events())
    assert len(await store.all_events(aggregate_type="Transfer")) == before
