"""The share message, stored with the study as its own series (a DICOM Basic Text SR).

One series per bucket and study, with UIDs derived from both, so a redelivered `StudyShared`
writes the same object and appends nothing (`StudyMessageStored` once). The author is the
sender's id; the reason for sharing never goes in.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pymongo.asynchronous.client_session import AsyncClientSession

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.logging import get_logger
from studyshare.study_store.adapters.dicom_files import read_header
from studyshare.study_store.domain.dicom_meta import BASIC_TEXT_SR
from studyshare.study_store.service_layer.ingest import Ingest, Upload, load_studies, parse

log = get_logger(__name__)

MESSAGE_SERIES_NUMBER = 9901
COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "StudyDescription",
)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def message_uids(bucket_id: str, study_uid: str) -> tuple[str, str]:
    series = generate_uid(entropy_srcs=["studyshare-message-series", bucket_id, study_uid])
    instance = generate_uid(entropy_srcs=["studyshare-message-instance", bucket_id, study_uid])
    return series, instance


def message_document(
    source: Dataset, bucket_id: str, text: str, author_id: str, when: datetime
) -> bytes:
    """A Basic Text SR holding the message, in the study (patient/study modules copied)."""
    series_uid, sop_uid = message_uids(bucket_id, str(source.StudyInstanceUID))
    ds = Dataset()
    for keyword in COPIED:
        if keyword in source:
            ds[keyword] = source[keyword]
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "SR"
    ds.SeriesNumber = MESSAGE_SERIES_NUMBER
    ds.InstanceNumber = 1
    ds.SeriesDescription = "Share message"
    ds.Manufacturer = "StudyShare"
    stamp = when.astimezone(UTC)
    ds.ContentDate = stamp.strftime("%Y%m%d")
    ds.ContentTime = stamp.strftime("%H%M%S")
    ds.SeriesDate = ds.ContentDate
    ds.SeriesTime = ds.ContentTime
    ds.ContentCreatorName = author_id
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence()
    ds.PerformedProcedureCodeSequence = DicomSequence()
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ConceptNameCodeSequence = DicomSequence([_code("121106", "DCM", "Comment")])
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = DicomSequence([_code("121106", "DCM", "Comment")])
    item.TextValue = text
    ds.ContentSequence = DicomSequence([item])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


async def store_share_message(
    ingest: Ingest,
    bucket_id: str,
    study_uid: str,
    text: str,
    author_id: str,
    when: datetime,
    causation_id: str | None = None,
) -> bool:
    """Write the message series into the study once; False when the study is not here."""
    study = (await load_studies(ingest.store, [study_uid], None))[study_uid]
    if not study.exists:
        log.warning("message.study_unknown", bucket_id=bucket_id)
        return False
    if bucket_id in study.message_buckets:
        return True
    sources = [
        d
        for d in await ingest.index.instances_of(study_uid, with_meta=False)
        if d.get("kind") == "image"
    ]
    if not sources:
        return False
    source = await asyncio.to_thread(read_header, ingest.blobs, sources[0]["path"])
    data = message_document(source, bucket_id, text, author_id, when)
    parsed = parse(data)
    f = parsed.facts
    key = await ingest.blobs.write(f.study_uid, f.series_uid, f.sop_instance_uid, data)
    actor = Actor(kind="user", id=author_id)
    upload = Upload(via="message", actor=actor)

    async def stored_event(session: AsyncClientSession) -> list[EventEnvelope]:
        current = (await load_studies(ingest.store, [study_uid], session))[study_uid]
        return [
            envelope_for(
                event,
                aggregate_id=study_uid,
                aggregate_version=current.version + i + 1,
                actor=actor,
                causation_id=causation_id,
            )
            for i, event in enumerate(current.store_message(bucket_id, f.series_uid))
        ]

    await ingest.index_batch(
        upload,
        [parsed],
        {f.sop_instance_uid: key},
        kind="message",
        bucket_id=bucket_id,
        extra_events=stored_event,
    )
    log.info("message.stored", bucket_id=bucket_id, series_uid=f.series_uid)
    return True
