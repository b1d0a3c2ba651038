"""STOW-RS, QIDO-RS and WADO-RS against the real database, through the HTTP app."""

from __future__ import annotations

import asyncio
import io
import struct
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from pydicom import dcmread

from studyshare.contracts.envelope import Actor
from studyshare.plumbing.eventstore import EventStore
from studyshare.study_store.adapters.blobstore import digest_of, key_for
from studyshare.study_store.service_layer.ingest import Upload

from .conftest import build_app, multipart, write_study

pytestmark = pytest.mark.infra


def parts_of(response) -> list[bytes]:
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    chunks = response.content.split(f"--{boundary}".encode())
    out = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        out.append(chunk.split(b"\r\n\r\n", 1)[1][:-2])
    return out


async def upload(dapp, files, sub="usr_uploader", department="dep_1"):
    body, content_type = multipart(files)
    headers = dapp.tokens.user(sub, "department_staff", department_ids=[department])
    return await dapp.client.post(
        "/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type}
    )


async def test_stow_stores_instances_and_the_first_batch_is_a_study_received(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=2, per_series=3)
    response = await upload(dicom_app, files)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    stored = response.json()
    assert len(stored["00081199"]["Value"]) == 6
    assert "00081198" not in stored

    events = await EventStore(dicom_app.stores.db).load(study_uid)
    assert [e.event_type for e in events] == ["StudyReceived"]
    received = events[0].payload
    assert received["department_id"] == "dep_1"
    assert received["owner_id"] == "usr_uploader"
    assert received["patient_initials"] == "J.D."
    assert received["patient_birth_date"] == "1980-02-14"
    assert received["instance_count"] == 6 and received["series_count"] == 2
    assert received["modalities"] == ["CT"]
    assert received["received_via"] == "stow-rs"
    assert "Doe" not in str(received), "no patient name leaves the study store in events"

    study = await dicom_app.stores.index.study(study_uid)
    assert study["instance_count"] == 6 and study["series_count"] == 2
    for f in files:
        ds = dcmread(f)
        key = key_for(study_uid, ds.SeriesInstanceUID, ds.SOPInstanceUID, digest_of(f.read_bytes()))
        stored = await dicom_app.stores.blobs.read(key)
        assert stored == f.read_bytes(), "stored exactly as received"


async def test_later_instances_append_one_study_instances_added_per_batch(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=3, per_series=2)
    assert (await upload(dicom_app, files[:2])).status_code == 200
    assert (await upload(dicom_app, files[2:])).status_code == 200
    again = await upload(dicom_app, files[:3])
    assert again.status_code == 200, "sending the same instances again is fine"
    events = await EventStore(dicom_app.stores.db).load(study_uid)
    assert [e.event_type for e in events] == ["StudyReceived", "StudyInstancesAdded"]
    assert events[1].payload["instance_count"] == 4
    assert len(events[1].payload["series_uids"]) == 2
    study = await dicom_app.stores.index.study(study_uid)
    assert study["instance_count"] == 6 and study["series_count"] == 3
    assert len(study["upload_batch_ids"]) == 2, "a re-send that adds nothing changes nothing"


async def test_studies_uploaded_together_share_one_batch_id(dicom_app, tmp_path):
    uid_a, files_a = write_study(tmp_path / "a")
    uid_b, files_b = write_study(tmp_path / "b", modality="MR")
    uid_c, files_c = write_study(tmp_path / "c")
    assert (await upload(dicom_app, files_a + files_b)).status_code == 200
    assert (await upload(dicom_app, files_c)).status_code == 200
    store = EventStore(dicom_app.stores.db)
    batch_a = (await store.load(uid_a))[0].payload["upload_batch_id"]
    batch_b = (await store.load(uid_b))[0].payload["upload_batch_id"]
    batch_c = (await store.load(uid_c))[0].payload["upload_batch_id"]
    assert batch_a == batch_b != batch_c
    assert await dicom_app.stores.index.studies_uploaded_with(uid_a) == sorted([uid_a, uid_b])
    dicom_app.access.allow("usr_uploader", uid_a)
    headers = dicom_app.tokens.user("usr_uploader", "department_staff")
    together = await dicom_app.client.get(
        f"/api/studies/{uid_a}/uploaded-together", headers=headers
    )
    assert together.json()["study_uids"] == [uid_a], "only studies the caller may open"
    dicom_app.access.allow("usr_uploader", uid_b)
    dicom_app.access.allow("usr_uploader", uid_c)
    together = await dicom_app.client.get(
        f"/api/studies/{uid_a}/uploaded-together", headers=headers
    )
    assert together.json()["study_uids"] == sorted([uid_a, uid_b])
    # a sibling held only anonymized: its real UID would tie it to this study and its patient
    dicom_app.access.allow("usr_uploader", uid_b, anonymized=True, bucket_id="bkt_anon")
    together = await dicom_app.client.get(
        f"/api/studies/{uid_a}/uploaded-together", headers=headers
    )
    assert together.json()["study_uids"] == [uid_a]


async def test_stow_refuses_garbage_parts_and_reports_them(dicom_app, tmp_path):
    _study_uid, files = write_study(tmp_path / "a", series=1, per_series=1)
    response = await upload(dicom_app, [files[0], b"this is not DICOM"])
    assert response.status_code == 202
    body = response.json()
    assert len(body["00081199"]["Value"]) == 1
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    only_garbage = await upload(dicom_app, [b"nope"])
    assert only_garbage.status_code == 409


def unknown_vr(path: Path) -> bytes:
    """The object with the VR of its Patient's Name made 'ZZ' (pydicom: NotImplementedError)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"\x10\x00\x10\x00PN")  # (0010,0010), explicit VR little endian
    data[at + 4 : at + 6] = b"ZZ"
    return bytes(data)


def nested_sequences(path: Path, depth: int = 3000) -> bytes:
    """The object with `depth` sequences of undefined length nested before its pixel data
    (pydicom: RecursionError)."""
    data = path.read_bytes()
    opening = struct.pack(
        "<HH2sHIHHI", 0x0040, 0x0260, b"SQ", 0, 0xFFFFFFFF, 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHIHHI", 0xFFFE, 0xE00D, 0, 0xFFFE, 0xE0DD, 0)
    at = data.index(struct.pack("<HH", 0x7FE0, 0x0010))
    return data[:at] + opening * depth + closing * depth + data[at:]


def series_number_of_letters(path: Path) -> bytes:
    """The object with 'abc' as its Series Number (IS): parsed, but unreadable as a number."""
    data = path.read_bytes()
    at = data.index(b"\x20\x00\x11\x00IS")
    length = struct.unpack("<H", data[at + 6 : at + 8])[0]
    return data[: at + 6] + struct.pack("<H", 4) + b"abc " + data[at + 8 + length :]


@pytest.mark.parametrize("malformed", [unknown_vr, nested_sequences], ids=lambda f: f.__name__)
async def test_an_object_the_parser_fails_on_fails_alone_and_the_others_are_stored(
    dicom_app, tmp_path, malformed
):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    response = await upload(dicom_app, [files[0], malformed(files[1])])
    assert response.status_code == 202, response.text
    body = response.json()
    assert len(body["00081199"]["Value"]) == 1
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert (await dicom_app.stores.index.study(study_uid))["instance_count"] == 1


async def test_an_object_whose_series_number_is_no_number_is_stored_with_the_others(
    dicom_app, tmp_path
):
    """A value read after parsing raised outside the per-object guard: the whole upload
    failed (500) and its valid objects were not stored."""
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    response = await upload(dicom_app, [series_number_of_letters(files[0]), files[1]])
    assert response.status_code == 200, response.text
    assert (await dicom_app.stores.index.study(study_uid))["instance_count"] == 2
    [series] = await dicom_app.stores.index.series_of(study_uid)
    assert series["instance_count"] == 2


async def test_stow_needs_multipart_related_dicom(dicom_app):
    headers = dicom_app.tokens.user("usr_u", "physician")
    response = await dicom_app.client.post(
        "/dicomweb/studies", content=b"{}", headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 415
    assert response.json()["rule"] == "UnsupportedMediaType"


async def test_stow_refuses_a_department_the_uploader_is_not_in(dicom_app, tmp_path):
    _, files = write_study(tmp_path / "a", series=1, per_series=1)
    body, content_type = multipart(files)
    headers = dicom_app.tokens.user("usr_u", "department_staff", department_ids=["dep_1"])
    response = await dicom_app.client.post(
        "/dicomweb/studies?department_id=dep_2",
        content=body,
        headers={**headers, "Content-Type": content_type},
    )
    assert response.status_code == 403
    assert response.json()["rule"] == "DepartmentNotYours"


async def test_nobody_slips_instances_into_another_departments_study(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    assert (await upload(dicom_app, files[:1], sub="usr_a", department="dep_1")).status_code == 200
    foreign = await upload(dicom_app, files[1:], sub="usr_b", department="dep_2")
    assert foreign.status_code == 409
    assert foreign.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0124]
    assert (await dicom_app.stores.index.study(study_uid))["instance_count"] == 1


def in_series(path: Path, series_uid: str) -> bytes:
    """The object moved into another series (by its Series Instance UID alone)."""
    ds = dcmread(path)
    ds.SeriesInstanceUID = series_uid
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


async def test_an_instance_in_another_studys_series_is_refused_and_changes_nothing(
    dicom_app, tmp_path
):
    """Another study's Series Instance UID: refused (0x0124), the study it belongs to keeps its
    counts, and the uploader's study is not created."""
    uid_a, files_a = write_study(tmp_path / "a", series=1, per_series=2)
    assert (await upload(dicom_app, files_a, sub="usr_a", department="dep_1")).status_code == 200
    series_a = str(dcmread(files_a[0]).SeriesInstanceUID)
    uid_b, files_b = write_study(tmp_path / "b", series=1, per_series=1, patient_name="Eve^Mal")

    response = await upload(
        dicom_app, [in_series(files_b[0], series_a)], sub="usr_b", department="dep_2"
    )

    assert response.status_code == 409, response.text
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0124]
    index = dicom_app.stores.index
    study_a = await index.study(uid_a)
    assert study_a["instance_count"] == 2 and study_a["series_count"] == 1
    [series] = await index.series_of(uid_a)
    assert series["_id"] == series_a and series["instance_count"] == 2
    assert len(await index.instances_of(uid_a)) == 2
    assert await index.study(uid_b) is None
    assert await index.instances_of(uid_b) == []
    assert await EventStore(dicom_app.stores.db).load(uid_b) == []


async def test_a_series_named_by_two_studies_of_one_upload_stays_with_the_first(
    dicom_app, tmp_path
):
    uid_a, files_a = write_study(tmp_path / "a", series=1, per_series=1)
    uid_b, files_b = write_study(tmp_path / "b", series=1, per_series=1)
    series_a = str(dcmread(files_a[0]).SeriesInstanceUID)
    uploader = Upload(via="stow-rs", actor=Actor(kind="user", id="usr_a"), owner_id="usr_a")

    outcomes = await dicom_app.stores.ingest.receive(
        uploader, [files_a[0].read_bytes(), in_series(files_b[0], series_a)]
    )

    by_study = {outcome.study_uid: outcome for outcome in outcomes}
    assert by_study[uid_a].ok
    refused = by_study[uid_b]
    assert (refused.failure, refused.detail) == (0x0124, "the series belongs to another study")
    assert (await dicom_app.stores.index.study(uid_a))["instance_count"] == 1
    assert await dicom_app.stores.index.study(uid_b) is None


async def test_two_uploads_racing_for_one_series_one_study_gets_it(dicom_app, tmp_path):
    """Both find the series new; the transaction of the second sees the first's."""
    uid_a, files_a = write_study(tmp_path / "a", series=1, per_series=1)
    uid_b, files_b = write_study(tmp_path / "b", series=1, per_series=1)
    series_a = str(dcmread(files_a[0]).SeriesInstanceUID)
    racing = [files_a[0].read_bytes(), in_series(files_b[0], series_a)]

    answers = await asyncio.gather(
        upload(dicom_app, racing[:1], sub="usr_a"), upload(dicom_app, racing[1:], sub="usr_b")
    )

    assert sorted(a.status_code for a in answers) == [200, 409]
    index = dicom_app.stores.index
    [series] = await dicom_app.stores.db["dicom_series"].find({"_id": series_a}).to_list()
    owner, other = (uid_a, uid_b) if series["study_uid"] == uid_a else (uid_b, uid_a)
    assert series["instance_count"] == 1
    assert (await index.study(owner))["instance_count"] == 1
    assert await index.study(other) is None
    assert await index.instances_of(other) == []
    assert len([key async for key in dicom_app.stores.blobs.keys()]) == 1, "the loser's removed"


async def test_stow_needs_a_user_token(dicom_app, study_files):
    body, content_type = multipart(study_files[1])
    response = await dicom_app.client.post(
        "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 401
    patient = dicom_app.tokens.patient("REF123", study_files[0])
    response = await dicom_app.client.post(
        "/dicomweb/studies", content=body, headers={**patient, "Content-Type": content_type}
    )
    assert response.status_code == 403


async def test_qido_lists_only_studies_the_access_model_opens_and_filters(dicom_app, tmp_path):
    uid_a, files_a = write_study(tmp_path / "a", patient_id="P-A", study_date="20240101")
    uid_b, files_b = write_study(
        tmp_path / "b", patient_id="P-B", study_date="20240301", modality="MR"
    )
    _uid_c, files_c = write_study(tmp_path / "c", patient_id="P-C", study_date="20240401")
    assert (await upload(dicom_app, files_a + files_b + files_c)).status_code == 200
    dicom_app.access.allow("usr_viewer", uid_a)
    dicom_app.access.allow("usr_viewer", uid_b)
    headers = dicom_app.tokens.user("usr_viewer", "physician")

    async def search(**params):
        response = await dicom_app.client.get("/dicomweb/studies", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return [s["0020000D"]["Value"][0] for s in response.json()]

    assert sorted(await search()) == sorted([uid_a, uid_b]), "study C is not visible"
    assert await search(PatientID="P-B") == [uid_b]
    assert await search(PatientID="P-C") == []
    assert await search(ModalitiesInStudy="MR") == [uid_b]
    assert await search(StudyDate="20240201-20241231") == [uid_b]
    assert await search(StudyDate="-20240131") == [uid_a]
    assert await search(PatientName="doe*") == [uid_b, uid_a]
    assert await search(limit=1) == [uid_b]
    assert await search(limit=1, offset=1) == [uid_a]
    response = await dicom_app.client.get("/dicomweb/studies", headers=headers)
    study = next(s for s in response.json() if s["0020000D"]["Value"][0] == uid_a)
    assert study["00201208"]["Value"] == [4]
    assert study["00080061"]["Value"] == ["CT"]


async def test_the_index_searches_many_studies_newest_first_across_its_chunks(dicom_app):
    """More UIDs than one `$in` takes: matched and ordered as one sorted query would."""
    index = dicom_app.stores.index
    docs = [
        {
            "_id": f"1.2.3.{n}",
            "study_date": f"2024{1 + n % 7:02d}{1 + n % 3:02d}" if n % 11 else "",
            "modalities": ["MR" if n % 2 else "CT"],
        }
        for n in range(260)
    ]
    await index.studies.insert_many(docs)
    wanted = {d["_id"] for d in docs if not d["_id"].endswith("7")}
    for query in ({}, {"modalities": {"$in": ["MR"]}}):
        expected = [
            d["_id"]
            async for d in index.studies.find({"_id": {"$in": sorted(wanted)}, **query}).sort(
                [("study_date", -1), ("_id", 1)]
            )
        ]
        found = [d async for d in index.search_among([(wanted, query, None)])]
        assert [d["_id"] for d in found] == expected and len(expected) > 100, query
        assert all("modalities" in d for d in found), "whole documents"
    halves = sorted(wanted)[::2], sorted(wanted)[1::2]
    both = index.search_among([(halves[0], {"modalities": "MR"}, None), (halves[1], {}, None)])
    expected = [
        d["_id"]
        async for d in index.studies.find(
            {"$or": [{"_id": {"$in": halves[0]}, "modalities": "MR"}, {"_id": {"$in": halves[1]}}]}
        ).sort([("study_date", -1), ("_id", 1)])
    ]
    assert [d["_id"] async for d in both] == expected, "two searches, merged in order"
    everything = [d["_id"] async for d in index.search_studies({})]
    assert everything == [
        d["_id"] async for d in index.studies.find({}).sort([("study_date", -1), ("_id", 1)])
    ]
    assert len(everything) == 260
    assert [d async for d in index.search_among([])] == []


async def test_qido_for_one_patient_opens_only_that_patients_studies(dicom_app, tmp_path):
    """The study index matches the patient first: a department's other studies are neither
    decided nor read series by series (a search for one patient stays cheap in an archive)."""
    mine, files = write_study(tmp_path / "mine", patient_id="P-42", patient_name="Roe^Rick")
    others = []
    for n in range(6):
        uid, more = write_study(tmp_path / f"o{n}", patient_id=f"P-{n}", series=1, per_series=1)
        files += more
        others.append(uid)
    assert (await upload(dicom_app, files)).status_code == 200
    for uid in (mine, *others):
        dicom_app.access.allow("usr_rad", uid)
    decided: list[str] = []
    decide = dicom_app.access.decide

    async def counting(principal, study_uid):
        decided.append(study_uid)
        return await decide(principal, study_uid)

    dicom_app.access.decide = counting
    headers = dicom_app.tokens.user("usr_rad", "radiologist")
    for params in ({"PatientID": "p-42"}, {"PatientID": "P-4?"}, {"PatientName": "roe^*"}):
        decided.clear()
        r = await dicom_app.client.get("/dicomweb/studies", params=params, headers=headers)
        assert [s["0020000D"]["Value"][0] for s in r.json()] == [mine], params
        assert decided == [mine], params
    r = await dicom_app.client.get("/dicomweb/studies", params={"PatientID": "*"}, headers=headers)
    assert len(r.json()) == 7, "a pattern any value matches is matched on the answers"


async def test_qido_for_the_service_desk_searches_every_study_without_listing_them(
    dicom_app, tmp_path
):
    """The service desk opens every study: its search is not restricted to a list of UIDs,
    and still asks each decision (a refused one is left out)."""
    uids, files = [], []
    for n, day in enumerate(("20240110", "20240320", "20240205")):
        uid, more = write_study(
            tmp_path / str(n), patient_id=f"D-{n}", study_date=day, series=1, per_series=1
        )
        uids.append(uid)
        files += more
    assert (await upload(dicom_app, files)).status_code == 200
    for uid in uids[:2]:
        dicom_app.access.allow("usr_desk", uid, via="service_desk")
    headers = dicom_app.tokens.user("usr_desk", "service_desk")

    async def search(**params):
        r = await dicom_app.client.get("/dicomweb/studies", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return [s["0020000D"]["Value"][0] for s in r.json()]

    assert await search() == [uids[1], uids[0]], "newest first; the refused one left out"
    assert await search(PatientID="d-1") == [uids[1]]
    assert await search(StudyInstanceUID=f"{uids[0]},{uids[2]}") == [uids[0]]


async def test_wado_retrieve_metadata_frames_rendered_each_guarded_and_logged(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    assert (await upload(dicom_app, files)).status_code == 200
    ds = dcmread(files[0])
    series_uid, sop_uid = ds.SeriesInstanceUID, ds.SOPInstanceUID
    instance = f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
    urls = [
        f"/dicomweb/studies/{study_uid}",
        f"/dicomweb/studies/{study_uid}/metadata",
        f"/dicomweb/studies/{study_uid}/series",
        f"/dicomweb/studies/{study_uid}/series/{series_uid}",
        f"/dicomweb/studies/{study_uid}/series/{series_uid}/metadata",
        f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances",
        instance,
        f"{instance}/metadata",
        f"{instance}/frames/1",
        f"{instance}/rendered",
        f"{instance}/frames/1/rendered",
        f"/api/studies/{study_uid}/download",
    ]
    stranger = dicom_app.tokens.user("usr_stranger", "physician")
    dicom_app.access.glass.add(("usr_colleague", study_uid))
    colleague = dicom_app.tokens.user("usr_colleague", "physician")
    for url in urls:
        refused = await dicom_app.client.get(url, headers=stranger)
        assert refused.status_code == 404, url  # as if it did not exist: no way in at all
        assert refused.json()["rule"] == "StudyNotFound"
        told = await dicom_app.client.get(url, headers=colleague)
        assert told.status_code == 403, url  # may break the glass: told they have no access
        assert told.json()["rule"] == "NoAccessToStudy"
    assert dicom_app.access_log.calls == []

    dicom_app.access.allow("usr_viewer", study_uid, download=True)
    headers = dicom_app.tokens.user("usr_viewer", "physician")
    whole = await dicom_app.client.get(urls[0], headers=headers)
    assert whole.status_code == 200
    assert whole.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    parts = parts_of(whole)
    assert sorted(parts) == sorted(f.read_bytes() for f in files)

    metadata = (await dicom_app.client.get(urls[1], headers=headers)).json()
    assert len(metadata) == 2
    assert metadata[0]["00100010"]["Value"][0]["Alphabetic"] == "Doe^Jane"
    assert metadata[0]["7FE00010"]["BulkDataURI"].endswith("/frames/1")

    frames = await dicom_app.client.get(f"{instance}/frames/1", headers=headers)
    assert frames.status_code == 200
    assert parts_of(frames)[0] == ds.PixelData

    png = await dicom_app.client.get(
        f"{instance}/rendered", headers={**headers, "Accept": "image/png"}
    )
    assert png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (64, 64) and image.mode == "L"
    # the upper half sits at the window centre (40 HU): mid grey after the VOI LUT
    assert 100 < image.getpixel((10, 5)) < 155
    jpeg = await dicom_app.client.get(f"{instance}/frames/1/rendered", headers=headers)
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert (await dicom_app.client.get(f"{instance}/frames/2", headers=headers)).status_code == 404

    zipped = await dicom_app.client.get(urls[-1], headers=headers)
    assert zipped.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(zipped.content))
    names = archive.namelist()
    assert "DICOMDIR" in names, "a DICOM File-set viewers import directly"
    dicomdir = dcmread(io.BytesIO(archive.read("DICOMDIR")))
    images = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert len(images) == 2
    assert sorted(archive.read(n) for n in names if n != "DICOMDIR") == sorted(
        f.read_bytes() for f in files
    )
    plain = await dicom_app.client.get(f"{urls[-1]}?dicomdir=false", headers=headers)
    plain_names = zipfile.ZipFile(io.BytesIO(plain.content)).namelist()
    assert len(plain_names) == 2 and all(n.startswith("DICOM/") for n in plain_names)

    actions = dicom_app.access_log.actions(study_uid)
    assert {"instances", "metadata", "rendered", "download"} <= set(actions)


async def test_download_only_where_the_decision_allows_it(dicom_app, study_files):
    study_uid, files = study_files
    assert (await upload(dicom_app, files)).status_code == 200
    dicom_app.access.allow("usr_viewer", study_uid, download=False, via="grant")
    headers = dicom_app.tokens.user("usr_viewer", "physician")
    response = await dicom_app.client.get(f"/api/studies/{study_uid}/download", headers=headers)
    assert response.status_code == 403
    assert response.json()["rule"] == "DownloadNotAllowed"
    assert "download" not in dicom_app.access_log.actions(study_uid)


async def test_two_concurrent_uploads_of_a_new_study_one_arrival_one_addition(dicom_app, tmp_path):
    """Both find the study new; one append wins, the other retries and adds its instances."""
    study_uid, files = write_study(tmp_path / "a", series=2, per_series=3)
    first, second = await asyncio.gather(
        upload(dicom_app, files[:3], sub="usr_a"), upload(dicom_app, files[3:], sub="usr_a")
    )
    assert first.status_code == second.status_code == 200
    events = await EventStore(dicom_app.stores.db).load(study_uid)
    assert sorted(e.event_type for e in events) == ["StudyInstancesAdded", "StudyReceived"]
    assert sum(e.payload["instance_count"] for e in events) == 6
    study = await dicom_app.stores.index.study(study_uid)
    assert study["instance_count"] == 6 and study["series_count"] == 2


async def test_thumbnails_of_study_series_and_instance(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=2, per_series=3)
    assert (await upload(dicom_app, files)).status_code == 200
    ds = dcmread(files[0])
    base = f"/dicomweb/studies/{study_uid}"
    stranger = dicom_app.tokens.user("usr_stranger", "physician")
    assert (await dicom_app.client.get(f"{base}/thumbnail", headers=stranger)).status_code == 404
    dicom_app.access.allow("usr_viewer", study_uid)
    headers = dicom_app.tokens.user("usr_viewer", "physician")
    for url in (
        f"{base}/thumbnail",
        f"{base}/series/{ds.SeriesInstanceUID}/thumbnail",
        f"{base}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/thumbnail",
    ):
        response = await dicom_app.client.get(url, params={"viewport": "32,32"}, headers=headers)
        assert response.status_code == 200, url
        assert response.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).size == (32, 32)
    bad = await dicom_app.client.get(f"{base}/thumbnail", params={"viewport": "D"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["rule"] == "InvalidRequest"
    clamped = await dicom_app.client.get(
        f"{base}/thumbnail", params={"viewport": "0,9999"}, headers=headers
    )
    assert Image.open(io.BytesIO(clamped.content)).size == (1, 1)
    assert "rendered" in dicom_app.access_log.actions(study_uid)


def test_the_wado_reads_are_declared_hot_and_can_be_switched_off(settings):
    """The six WADO-RS reads are the hot routes, found on the routes themselves (`@hot`);
    `STUDYSHARE_HOT_ROUTES=false` leaves every request to FastAPI."""
    study = "/dicomweb/studies/{study_uid}"
    series, instance = (
        study + "/series/{series_uid}",
        study + "/series/{series_uid}/instances/{sop_uid}",
    )
    reads = {p + suffix for p in (study, series, instance) for suffix in ("", "/metadata")}
    app = build_app(settings)
    assert {hot.route.path for hot in app.hot.routes} == reads
    assert build_app(settings.model_copy(update={"hot_routes": False})).hot is None
