"""Anonymized shares: first name a number, last name "Anonymous", everywhere, rewritten on the
way out; originals untouched; report-bearing objects never served."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from studyshare.study_store.adapters.blobstore import digest_of, key_for

from .conftest import multipart, write_study
from .test_dicomweb import parts_of, upload

pytestmark = pytest.mark.infra

PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def encapsulated_pdf(path, study_uid: str) -> bytes:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-0001"
    ds.PatientBirthDate = "19800214"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = PDF
    ds.Modality = "DOC"
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4 report of Jane Doe %%EOF\n"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = PDF
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


@pytest.fixture
async def shared(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    pdf = tmp_path / "report.dcm"
    encapsulated_pdf(pdf, study_uid)
    assert (await upload(dicom_app, [*files, pdf])).status_code == 200
    dicom_app.access.allow(
        "usr_anon",
        study_uid,
        anonymized=True,
        anonymous_number="4711",
        report="read",
        download=True,
        via="grant",
        bucket_id="bkt_1",
    )
    return study_uid, files, pdf


def assert_anonymized(ds) -> None:
    assert str(ds.PatientName) == "Anonymous^4711"
    assert ds.PatientName.family_name == "Anonymous" and ds.PatientName.given_name == "4711"
    assert ds.PatientID.startswith("ANON-") and ds.PatientID != "PID-0001"
    for keyword in ("PatientBirthDate", "PatientAddress", "OtherPatientIDs", "AccessionNumber"):
        assert not ds.get(keyword)


async def test_every_dicom_object_served_is_rewritten_and_the_originals_stay(dicom_app, shared):
    study_uid, files, _pdf = shared
    headers = dicom_app.tokens.user("usr_anon", "physician")
    response = await dicom_app.client.get(f"/dicomweb/studies/{study_uid}", headers=headers)
    assert response.status_code == 200
    served = [dcmread(io.BytesIO(p)) for p in parts_of(response)]
    assert len(served) == 2, "the encapsulated PDF report is never served on anonymized shares"
    pseudonyms = set()
    for ds in served:
        assert_anonymized(ds)
        pseudonyms.add(ds.PatientID)
        assert ds.SOPClassUID != PDF
        assert len(ds.PixelData) == 64 * 64 * 2
    assert len(pseudonyms) == 1, "one patient, one stable pseudonym"
    for f in files:
        original = dcmread(f)
        key = key_for(
            study_uid,
            original.SeriesInstanceUID,
            original.SOPInstanceUID,
            digest_of(f.read_bytes()),
        )
        on_disk = dcmread(io.BytesIO(await dicom_app.stores.blobs.read(key)))
        assert str(on_disk.PatientName) == "Doe^Jane"
        assert on_disk.PatientBirthDate == "19800214"
        assert on_disk.PatientID == "PID-0001"

    one = dcmread(files[0])
    instance = (
        f"/dicomweb/studies/{study_uid}/series/{one.SeriesInstanceUID}"
        f"/instances/{one.SOPInstanceUID}"
    )
    single = await dicom_app.client.get(instance, headers=headers)
    served_one = dcmread(io.BytesIO(parts_of(single)[0]))
    assert_anonymized(served_one)
    assert served_one.SOPInstanceUID != one.SOPInstanceUID, "UIDs remapped for the share"
    assert served_one.StudyInstanceUID not in (study_uid, served[0].SOPInstanceUID)
    assert served_one.SOPInstanceUID in {ds.SOPInstanceUID for ds in served}

    zipped = await dicom_app.client.get(f"/api/studies/{study_uid}/download", headers=headers)
    archive = zipfile.ZipFile(io.BytesIO(zipped.content))
    names = [n for n in archive.namelist() if n != "DICOMDIR"]
    assert len(names) == 2 and "DICOMDIR" in archive.namelist()
    for name in names:
        assert_anonymized(dcmread(io.BytesIO(archive.read(name))))
    dicomdir = dcmread(io.BytesIO(archive.read("DICOMDIR")))
    patient = dicomdir.DirectoryRecordSequence[0]
    assert str(patient.PatientName) == "Anonymous^4711"
    assert b"Doe" not in zipped.content


async def test_metadata_and_search_answers_are_anonymized_too(dicom_app, shared):
    study_uid, _files, _pdf = shared
    headers = dicom_app.tokens.user("usr_anon", "physician")
    metadata = (
        await dicom_app.client.get(f"/dicomweb/studies/{study_uid}/metadata", headers=headers)
    ).json()
    assert len(metadata) == 2
    series = (
        await dicom_app.client.get(f"/dicomweb/studies/{study_uid}/series", headers=headers)
    ).json()
    assert len(series) == 1, "the report series is hidden"
    studies = (await dicom_app.client.get("/dicomweb/studies", headers=headers)).json()
    instances = (
        await dicom_app.client.get(f"/dicomweb/studies/{study_uid}/instances", headers=headers)
    ).json()
    for answer in (metadata, series, studies, instances):
        text = str(answer)
        assert "Doe" not in text and "Jane" not in text and "PID-0001" not in text
        assert "19800214" not in text
        for item in answer:
            assert item["00100010"]["Value"][0]["Alphabetic"] == "Anonymous^4711"
    # identifying filters match only what the recipient sees
    by_real_id = await dicom_app.client.get(
        "/dicomweb/studies", params={"PatientID": "PID-0001"}, headers=headers
    )
    assert by_real_id.json() == []
    pseudonym = studies[0]["00100020"]["Value"][0]
    by_pseudonym = await dicom_app.client.get(
        "/dicomweb/studies", params={"PatientID": pseudonym}, headers=headers
    )
    assert len(by_pseudonym.json()) == 1


async def test_search_matches_an_anonymized_share_by_the_date_it_shows(dicom_app, shared, tmp_path):
    """Its date is shifted: found by the date shown, not the real one; listed by the date
    shown among the studies shown in the clear (listed by its real date, as it once was, its
    neighbours gave that date away); never by an accession number (none is shown)."""
    study_uid, _files, _pdf = shared
    clear_uid, files = write_study(tmp_path / "clear", patient_id="PID-2", study_date="20240314")
    assert (await upload(dicom_app, files)).status_code == 200
    dicom_app.access.allow("usr_anon", clear_uid)
    headers = dicom_app.tokens.user("usr_anon", "physician")

    async def search(**params) -> list[dict]:
        r = await dicom_app.client.get("/dicomweb/studies", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    everything = await search()
    dates = [s["00080020"]["Value"][0] for s in everything]
    assert dates == sorted(dates, reverse=True) and dates[0] == "20240314", dates
    assert [s["00100020"]["Value"][0] == "PID-2" for s in everything] == [True, False]
    shown = everything[1]["00080020"]["Value"][0]
    assert shown != "20240315"
    # a clear study of the day before the shown date comes after it (the index keeps DA
    # dates: a shown date in another form once sorted by its characters, not its day)
    before = (datetime.strptime(shown, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    day_before, files = write_study(tmp_path / "before", patient_id="PID-3", study_date=before)
    assert (await upload(dicom_app, files)).status_code == 200
    dicom_app.access.allow("usr_anon", day_before)
    dates = [s["00080020"]["Value"][0] for s in await search()]
    assert dates == ["20240314", shown, before], dates
    [found] = await search(StudyDate=shown)
    assert found["00080020"]["Value"] == [shown]
    assert found["00100010"]["Value"][0]["Alphabetic"] == "Anonymous^4711"
    assert len(await search(StudyDate=f"{shown}-")) == 2
    assert await search(StudyDate="20240315") == []
    study = await dicom_app.stores.index.study(study_uid)
    assert await search(AccessionNumber=study["accession_number"]) == []


async def test_report_objects_need_report_access_and_are_never_anonymized_out(dicom_app, shared):
    study_uid, _files, pdf = shared
    dicom_app.access.allow("usr_images_only", study_uid, report="none", via="group")
    dicom_app.access.allow("usr_reader", study_uid, report="read", via="grant")
    pdf_ds = dcmread(pdf)
    url = (
        f"/dicomweb/studies/{study_uid}/series/{pdf_ds.SeriesInstanceUID}"
        f"/instances/{pdf_ds.SOPInstanceUID}"
    )
    for sub, expected in (("usr_images_only", 404), ("usr_anon", 404), ("usr_reader", 200)):
        headers = dicom_app.tokens.user(sub, "physician")
        assert (await dicom_app.client.get(url, headers=headers)).status_code == expected, sub
    reader = dicom_app.tokens.user("usr_reader", "physician")
    whole = await dicom_app.client.get(f"/dicomweb/studies/{study_uid}", headers=reader)
    assert len(parts_of(whole)) == 3


async def test_stow_via_single_part_upload_keeps_patient_names_in_the_store(dicom_app, tmp_path):
    """The study store keeps the real name (it owns the study); only what leaves is rewritten."""
    study_uid, files = write_study(tmp_path / "b", series=1, per_series=1)
    body, content_type = multipart(files)
    headers = dicom_app.tokens.user("usr_u", "department_staff", department_ids=["dep_9"])
    assert (
        await dicom_app.client.post(
            "/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type}
        )
    ).status_code == 200
    study = await dicom_app.stores.index.study(study_uid)
    assert study["patient_name"] == "Doe^Jane"


async def test_search_does_not_reveal_hidden_report_series(dicom_app, shared):
    study_uid, _files, _pdf = shared
    dicom_app.access.allow("usr_images_only", study_uid, report="none", via="group")
    dicom_app.access.allow("usr_reader", study_uid, report="read", via="grant")

    async def study_for(sub, **params):
        headers = dicom_app.tokens.user(sub, "physician")
        response = await dicom_app.client.get("/dicomweb/studies", params=params, headers=headers)
        return response.json()

    [hidden] = await study_for("usr_images_only")
    assert hidden["00080061"]["Value"] == ["CT"]
    assert hidden["00201206"]["Value"] == [1] and hidden["00201208"]["Value"] == [2]
    assert await study_for("usr_images_only", ModalitiesInStudy="DOC") == []
    [shown] = await study_for("usr_reader")
    assert shown["00080061"]["Value"] == ["CT", "DOC"]
    assert shown["00201208"]["Value"] == [3]
    assert len(await study_for("usr_reader", ModalitiesInStudy="DOC")) == 1


async def test_objects_with_burned_in_annotations_are_not_served_on_anonymized_shares(
    dicom_app, tmp_path
):
    study_uid, files = write_study(tmp_path / "b", series=1, per_series=2)
    burned = dcmread(files[1])
    burned.BurnedInAnnotation = "YES"
    burned.save_as(files[1], enforce_file_format=True)
    assert (await upload(dicom_app, files)).status_code == 200
    dicom_app.access.allow("usr_anon", study_uid, anonymized=True, anonymous_number="5")
    dicom_app.access.allow("usr_named", study_uid)
    for sub, expected in (("usr_anon", 1), ("usr_named", 2)):
        headers = dicom_app.tokens.user(sub, "physician")
        response = await dicom_app.client.get(f"/dicomweb/studies/{study_uid}", headers=headers)
        served = [dcmread(io.BytesIO(p)) for p in parts_of(response)]
        assert len(served) == expected, sub
    anon = dicom_app.tokens.user("usr_anon", "physician")
    url = (
        f"/dicomweb/studies/{study_uid}/series/{burned.SeriesInstanceUID}"
        f"/instances/{burned.SOPInstanceUID}/rendered"
    )
    assert (await dicom_app.client.get(url, headers=anon)).status_code == 404
