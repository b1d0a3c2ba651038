"""WADO-RS serves a study's instance documents from memory: what may go stale, and how not."""

from __future__ import annotations

import asyncio

import pytest
from pydicom import dcmread

from studyshare.contracts.envelope import Actor
from studyshare.study_store.adapters.blobstore import DirectoryBlobStore
from studyshare.study_store.adapters.instance_cache import StudyInstances
from studyshare.study_store.adapters.instances import InstanceIndex
from studyshare.study_store.service_layer.ingest import Ingest, Upload, parse

from .conftest import multipart, write_study

pytestmark = pytest.mark.infra


async def upload(dapp, files):
    body, content_type = multipart(files)
    headers = dapp.tokens.user("usr_uploader", "department_staff", department_ids=["dep_1"])
    response = await dapp.client.post(
        "/dicomweb/studies", content=body, headers={**headers, "Content-Type": content_type}
    )
    assert response.status_code == 200, response.text


async def metadata_uids(dapp, study_uid: str) -> list[str]:
    headers = dapp.tokens.user("usr_viewer", "physician")
    response = await dapp.client.get(f"/dicomweb/studies/{study_uid}/metadata", headers=headers)
    assert response.status_code == 200, response.text
    return sorted(item["00080018"]["Value"][0] for item in response.json())


def sop_uids(files) -> list[str]:
    return sorted(dcmread(f).SOPInstanceUID for f in files)


async def test_instances_stored_here_are_served_at_once(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=2, per_series=2)
    await upload(dicom_app, files[:2])
    dicom_app.access.allow("usr_viewer", study_uid)
    assert await metadata_uids(dicom_app, study_uid) == sop_uids(files[:2])
    await upload(dicom_app, files[2:])
    assert await metadata_uids(dicom_app, study_uid) == sop_uids(files)


async def test_instances_stored_by_another_process_follow_the_study_version(dicom_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=3)
    await upload(dicom_app, files[:1])
    dicom_app.access.allow("usr_viewer", study_uid)
    dicom_app.access.studies = {study_uid: {"seq": 1, "instance_count": 1}}
    assert await metadata_uids(dicom_app, study_uid) == sop_uids(files[:1])
    elsewhere = Ingest(dicom_app.stores.db, dicom_app.stores.blobs)  # C-STORE, worker: no hook
    await ingest_files(elsewhere, files[1:])
    assert await metadata_uids(dicom_app, study_uid) == sop_uids(files[:1]), "still cached"
    dicom_app.access.studies[study_uid] = {"seq": 2, "instance_count": 3}  # the event arrived
    assert await metadata_uids(dicom_app, study_uid) == sop_uids(files)


async def test_without_news_an_entry_lasts_its_ttl_only(settings, mongo_db, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    now = [100.0]
    index = InstanceIndex(mongo_db)
    cache = StudyInstances(index, ttl_s=2.0, clock=lambda: now[0])
    assert await cache.instances_of(study_uid) == []
    await ingest_files(Ingest(mongo_db, blob_store(settings)), files)
    now[0] += 1.9
    assert await cache.instances_of(study_uid) == []
    now[0] += 0.2
    assert sorted(d["_id"] for d in await cache.instances_of(study_uid)) == sop_uids(files)


async def test_concurrent_misses_share_one_query_and_a_forget_wins(settings, mongo_db, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=1, per_series=2)
    ingest = Ingest(mongo_db, blob_store(settings))
    await ingest_files(ingest, files[:1])
    queries = []

    class CountingIndex(InstanceIndex):
        async def instances_of(self, *args, **kwargs):
            queries.append(args)
            return await super().instances_of(*args, **kwargs)

    cache = StudyInstances(CountingIndex(mongo_db))
    answers = await asyncio.gather(*(cache.instances_of(study_uid) for _ in range(20)))
    assert len(queries) == 1
    assert all(len(a) == 1 for a in answers)

    ingest.on_indexed = cache.forget
    started = asyncio.create_task(cache.instances_of(study_uid, series_uid="none"))
    await ingest_files(ingest, files[1:])  # forgets the study while nothing is cached
    await started
    assert len(await cache.instances_of(study_uid)) == 2


def blob_store(settings) -> DirectoryBlobStore:
    return DirectoryBlobStore(settings.blob_dir)


async def ingest_files(ingest: Ingest, files) -> None:
    upload = Upload(
        via="c-store",
        actor=Actor(kind="service", id="ae:TEST"),
        department_id="dep_1",
        owner_id=None,
    )
    parsed = [parse(f.read_bytes()) for f in files]
    paths = {}
    for p in parsed:
        f = p.facts
        key = await ingest.blobs.write(f.study_uid, f.series_uid, f.sop_instance_uid, p.data)
        paths[f.sop_instance_uid] = key
    await ingest.index_batch(upload, parsed, paths)


async def test_least_recently_read_studies_make_room(settings, mongo_db, tmp_path):
    ingest = Ingest(mongo_db, blob_store(settings))
    first, first_files = write_study(tmp_path / "a", series=1, per_series=2)
    second, second_files = write_study(tmp_path / "b", series=1, per_series=2)
    await ingest_files(ingest, first_files + second_files)
    queries = []

    class CountingIndex(InstanceIndex):
        async def instances_of(self, study_uid, *args, **kwargs):
            queries.append(study_uid)
            return await super().instances_of(study_uid, *args, **kwargs)

    cache = StudyInstances(CountingIndex(mongo_db), max_instances=3)
    for uid in (first, first, second, second, first):
        assert len(await cache.instances_of(uid)) == 2
    assert queries == [first, second, first], "4 documents do not fit in 3"
