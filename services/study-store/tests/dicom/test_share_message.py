"""The share message stored with the study as its own series; a share with a PACS department
forwards the studies there."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from pydicom import dcmread

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.plumbing.eventstore import EventStore, envelope_for
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.plumbing.testing import unique
from studyshare.study_store.service_layer.messages import store_share_message
from studyshare.study_store.service_layer.reactions import ShareReactions

from .conftest import write_study
from .test_dicomweb import parts_of, upload
from .test_forwarding import create_department, run_transfers

pytestmark = pytest.mark.infra


def shared_envelope(
    bucket_id: str, study_uids, message: str | None, recipients=(), anonymize: bool = False
):
    event = StudyShared(
        bucket_id=bucket_id,
        study_uids=tuple(study_uids),
        recipients=tuple(recipients) or (RecipientRef(recipient_id="usr_r", kind="user"),),
        sender_id="usr_sender",
        sending_department_id="dep_1",
        access_level="images_report_read",
        reason="second opinion on the nodule of Jane",
        language="en",
        message=message,
        anonymize=anonymize,
    )
    return envelope_for(
        event,
        aggregate_id=bucket_id,
        aggregate_version=1,
        actor=Actor(id="usr_sender"),
        correlation_id="c-share",
    )


async def test_a_share_message_becomes_a_series_of_each_study_once(dicom_app, tmp_path):
    uid_a, files_a = write_study(tmp_path / "a", series=1, per_series=1)
    uid_b, files_b = write_study(tmp_path / "b", series=1, per_series=1)
    assert (await upload(dicom_app, files_a + files_b)).status_code == 200
    bucket = unique("bkt")
    runner = ProjectionRunner(ShareReactions(dicom_app.settings), dicom_app.stores.db)
    await runner.apply_batch([shared_envelope(bucket, [uid_a, uid_b], "Please look at S4.")])

    store = EventStore(dicom_app.stores.db)
    for uid in (uid_a, uid_b):
        stored = [e for e in await store.load(uid) if e.event_type == "StudyMessageStored"]
        assert len(stored) == 1 and stored[0].payload["bucket_id"] == bucket
    series_uid = stored[0].payload["series_uid"]

    # a redelivery (another runner, or the reaction running again) stores nothing new
    assert await store_share_message(
        dicom_app.stores.ingest,
        bucket,
        uid_b,
        "Please look at S4.",
        "usr_sender",
        datetime.now(UTC),
    )
    again = ProjectionRunner(ShareReactions(dicom_app.settings), dicom_app.stores.db)
    again.projection.name = "dicom_share_reactions_again"  # type: ignore[misc]
    await again.apply_batch([shared_envelope(bucket, [uid_a, uid_b], "Please look at S4.")])
    assert len([e for e in await store.load(uid_b) if e.event_type == "StudyMessageStored"]) == 1
    assert len(await dicom_app.stores.index.instances_of(uid_b, series_uid)) == 1

    # the bucket's recipient sees the message series; it is a Basic Text SR with the text
    dicom_app.access.allow("usr_r", uid_b, via="grant", bucket_id=bucket, report="none")
    recipient = dicom_app.tokens.user("usr_r", "physician")
    series = (
        await dicom_app.client.get(f"/dicomweb/studies/{uid_b}/series", headers=recipient)
    ).json()
    assert len(series) == 2
    response = await dicom_app.client.get(
        f"/dicomweb/studies/{uid_b}/series/{series_uid}", headers=recipient
    )
    sr = dcmread(io.BytesIO(parts_of(response)[0]))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"
    assert sr.Modality == "SR" and sr.StudyInstanceUID == uid_b
    assert sr.ContentSequence[0].TextValue == "Please look at S4."
    assert str(sr.ContentCreatorName) == "usr_sender"
    assert b"nodule" not in parts_of(response)[0], "the reason is never stored in the study"

    # the study's department sees it; a recipient of another bucket does not
    dicom_app.access.allow("usr_staff", uid_b, via="department")
    staff = dicom_app.tokens.user("usr_staff", "department_staff")
    assert (
        len((await dicom_app.client.get(f"/dicomweb/studies/{uid_b}/series", headers=staff)).json())
        == 2
    )
    dicom_app.access.allow("usr_other", uid_b, via="grant", bucket_id="bkt_other")
    other = dicom_app.tokens.user("usr_other", "physician")
    assert (
        len((await dicom_app.client.get(f"/dicomweb/studies/{uid_b}/series", headers=other)).json())
        == 1
    )


async def test_the_message_series_is_anonymized_for_an_anonymized_recipient(dicom_app, tmp_path):
    uid, files = write_study(tmp_path / "a", series=1, per_series=1)
    assert (await upload(dicom_app, files)).status_code == 200
    bucket = unique("bkt")
    runner = ProjectionRunner(ShareReactions(dicom_app.settings), dicom_app.stores.db)
    await runner.apply_batch([shared_envelope(bucket, [uid], "For you", anonymize=True)])
    dicom_app.access.allow(
        "usr_r",
        uid,
        via="grant",
        bucket_id=bucket,
        anonymized=True,
        anonymous_number="12",
        report="none",
    )
    headers = dicom_app.tokens.user("usr_r", "physician")
    response = await dicom_app.client.get(f"/dicomweb/studies/{uid}", headers=headers)
    objects = [dcmread(io.BytesIO(p)) for p in parts_of(response)]
    assert len(objects) == 2
    assert {str(o.PatientName) for o in objects} == {"Anonymous^12"}


async def test_a_share_without_message_or_for_an_unknown_study_stores_nothing(dicom_app, tmp_path):
    uid, files = write_study(tmp_path / "a", series=1, per_series=1)
    assert (await upload(dicom_app, files)).status_code == 200
    runner = ProjectionRunner(ShareReactions(dicom_app.settings), dicom_app.stores.db)
    await runner.apply_batch(
        [
            shared_envelope(unique("bkt"), [uid], None),
            shared_envelope(unique("bkt"), ["1.2.3.999"], "Hello"),
        ]
    )
    events = await EventStore(dicom_app.stores.db).all_events()
    assert not [e for e in events if e.event_type == "StudyMessageStored"]


async def test_sharing_with_a_pacs_department_forwards_the_studies(dicom_app, pacs, tmp_path):
    uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    assert (await upload(dicom_app, files)).status_code == 200
    pacs_id = unique("dep")
    await create_department(dicom_app.stores.db, pacs_id, pacs_port=pacs.port)
    bucket = unique("bkt")
    recipients = [
        RecipientRef(recipient_id=pacs_id, kind="department"),
        RecipientRef(recipient_id="usr_x", kind="user"),
    ]
    envelope = shared_envelope(bucket, [uid], None, recipients)
    runner = ProjectionRunner(ShareReactions(dicom_app.settings), dicom_app.stores.db)
    await runner.apply_batch([envelope])
    await run_transfers(dicom_app)
    assert len(pacs.received()) == 2
    transfers = await EventStore(dicom_app.stores.db).all_events(aggregate_type="Transfer")
    requested = [e for e in transfers if e.event_type == "StudyForwardRequested"]
    assert len(requested) == 1
    assert requested[0].payload["trigger"] == "share"
    assert requested[0].payload["bucket_id"] == bucket
    assert requested[0].causation_id == str(envelope.event_id)
