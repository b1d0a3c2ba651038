"""The two blob stores behind one interface (issue 17, point 1), against a real directory and
the real database: the same answers from both; GridFS objects are plain GridFS files; a stored
object is read piecewise (a frame, an anonymized copy) with memory bounded by a frame or a
chunk, never by the object."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tracemalloc
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from gridfs.asynchronous import AsyncGridFSBucket
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

from studyshare.study_store.adapters.blobstore import (
    BlobMissing,
    BlobStore,
    DirectoryBlobStore,
    digest_of,
    opened,
)
from studyshare.study_store.adapters.dicom_files import anonymized_chunks, read_frames
from studyshare.study_store.adapters.gridfs_blobstore import BlobCorrupt, GridFSBlobStore
from studyshare.study_store.domain.anonymize import AnonymizationKey, anonymize_dataset

from .conftest import write_study
from .test_dicomweb import upload

pytestmark = pytest.mark.infra

MiB = 1024 * 1024
CHUNK = 64 * 1024  # small GridFS chunks: every read below crosses several


@pytest.fixture(params=["directory", "gridfs"])
async def store(request, mongo_db, tmp_path) -> BlobStore:
    blobs: BlobStore = (
        DirectoryBlobStore(tmp_path / "blobs")
        if request.param == "directory"
        else GridFSBlobStore(mongo_db, chunk_size=CHUNK)
    )
    await blobs.setup()
    return blobs


def spooled_into(blobs: BlobStore, data: bytes):
    sink = blobs.spool()
    for start in range(0, len(data), 100_000):
        sink.write(data[start : start + 100_000])
    sink.close()
    return sink


async def test_both_stores_answer_the_same(store: BlobStore) -> None:
    data = os.urandom(3 * CHUNK + 12_345)
    key = await store.write("1.2.3", "1.2.3.4", "1.2.3.4.5", data)
    assert key == f"1.2.3/1.2.3.4/1.2.3.4.5.{digest_of(data)[:16]}.dcm"
    assert await store.write("1.2.3", "1.2.3.4", "1.2.3.4.5", data) == key, "stored once"
    assert await store.read(key) == data
    assert b"".join([c async for c in store.chunks(key)]) == data
    assert await store.size(key) == len(data)
    assert await store.digest(key) == digest_of(data)
    assert [k async for k in store.keys()] == [key]

    def piecewise() -> None:
        with opened(store, key) as source:
            for position, size in [(0, 10), (CHUNK - 5, 10), (CHUNK * 2 + 7, CHUNK * 1 + 3)]:
                source.seek(position)
                assert source.read(size) == data[position : position + size]
            source.seek(-20, io.SEEK_END)
            assert source.read() == data[-20:] and source.read(5) == b""
            source.seek(5)
            buffer = bytearray(2 * CHUNK)
            assert source.readinto(buffer) == len(buffer)
            assert bytes(buffer) == data[5 : 5 + len(buffer)]

    await asyncio.to_thread(piecewise)
    async with store.local_file(key) as path:
        assert Path(path).read_bytes() == data

    other = os.urandom(1000)
    spooled = (await asyncio.to_thread(spooled_into, store, other)).spooled
    placed = await store.place(spooled, "1.2.3", "1.2.3.4", "1.2.3.4.6")
    again = await asyncio.to_thread(spooled_into, store, other)
    assert await store.place(again.spooled, "1.2.3", "1.2.3.4", "1.2.3.4.6") == placed
    await asyncio.to_thread(again.discard)
    assert sorted([k async for k in store.keys()]) == sorted([key, placed]), "placed once"

    await store.remove(key)
    await store.remove(key)
    with pytest.raises(BlobMissing):
        await store.read(key)
    with pytest.raises(BlobMissing):
        await asyncio.to_thread(store.open, key)


async def test_gridfs_objects_are_gridfs_files_any_driver_reads(mongo_db) -> None:
    """What `mongofiles get <key>` and every driver's GridFS bucket see: the same bytes."""
    store = GridFSBlobStore(mongo_db, chunk_size=CHUNK)
    await store.setup()
    data = os.urandom(5 * CHUNK + 1)
    key = await store.write("1.2.3", "1.2.3.4", "1.2.3.4.5", data)
    bucket = AsyncGridFSBucket(mongo_db, bucket_name="blobs")
    stream = await bucket.open_download_stream_by_name(key)
    assert await stream.read() == data
    assert stream.metadata == {"sha256": digest_of(data)}


async def test_a_missing_chunk_is_an_error_not_a_short_object(mongo_db) -> None:
    store = GridFSBlobStore(mongo_db, chunk_size=CHUNK)
    await store.setup()
    key = await store.write("1.2.3", "1.2.3.4", "1.2.3.4.5", os.urandom(3 * CHUNK))
    await mongo_db["blobs.chunks"].delete_one({"n": 1})
    with pytest.raises(BlobCorrupt):
        await store.read(key)

    def read_it() -> bytes:
        with opened(store, key) as source:
            return source.read()

    with pytest.raises(BlobCorrupt):
        await asyncio.to_thread(read_it)


async def test_sweep_removes_only_uploads_cut_short(mongo_db) -> None:
    store = GridFSBlobStore(mongo_db, chunk_size=CHUNK)
    await store.setup()
    kept = await store.write("1.2.3", "1.2.3.4", "1.2.3.4.5", os.urandom(2 * CHUNK))
    cut = await store.upload("1.2.3/1.2.3.4/1.2.3.4.6.dcm", {})
    await cut.write(os.urandom(6 * CHUNK))  # chunks written, the process died before close
    left = await asyncio.to_thread(spooled_into, store, os.urandom(CHUNK))  # never placed
    assert left.spooled is not None
    assert await store.sweep(older_than=timedelta(days=1)) == 0, "recent uploads stay"
    assert await store.sweep(older_than=timedelta(seconds=-1)) == 2
    assert [k async for k in store.keys()] == [kept]
    assert await mongo_db["blobs.files"].count_documents({}) == 1
    assert await mongo_db["blobs.chunks"].count_documents({}) == 2
    assert await store.read(kept)


# --- reading DICOM objects piecewise ---------------------------------------------------


def multiframe(frames: int, rows: int, columns: int, ts: str = ExplicitVRLittleEndian):
    """A 16-bit multi-frame CT (native, or RLE-compressed) and its pixel arrays."""
    pixels = np.random.default_rng(3).integers(0, 4096, (frames, rows, columns), np.uint16)
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "PID-7", "19800214"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID, ds.SOPClassUID = generate_uid(), CTImageStorage
    ds.Modality, ds.StudyDate, ds.BurnedInAnnotation = "CT", "20240101", "NO"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if ts == RLELossless:
        ds.compress(RLELossless, pixels)
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue(), pixels


async def store_object(store: BlobStore, data: bytes) -> str:
    return await store.write("1.2.3", "1.2.3.4", generate_uid(), data)


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, RLELossless])
async def test_frames_are_read_one_at_a_time_wherever_they_are(store: BlobStore, ts) -> None:
    data, pixels = multiframe(5, 64, 48, ts)
    key = await store_object(store, data)

    def frames() -> tuple[str, list[bytes]]:
        with opened(store, key) as source:
            media, found = read_frames(source, [4, 1, 5])
            return media, [bytes(f) for f in found]

    media, found = await asyncio.to_thread(frames)
    if ts == RLELossless:
        assert media == f"image/x-dicom-rle; transfer-syntax={RLELossless}"
        stored = list(generate_frames(dcmread(io.BytesIO(data)).PixelData, number_of_frames=5))
        assert found == [stored[n - 1] for n in (4, 1, 5)]
    else:
        assert media == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
        assert found == [pixels[n - 1].tobytes() for n in (4, 1, 5)]


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, RLELossless])
async def test_an_anonymized_copy_is_the_whole_anonymization_streamed(store: BlobStore, ts) -> None:
    data, _ = multiframe(3, 32, 32, ts)
    key = await store_object(store, data)
    share = AnonymizationKey.for_share("secret", "bkt_1", "42", "PID-7")

    def streamed() -> bytes:
        with opened(store, key) as source:
            return b"".join(anonymized_chunks(source, share))

    copy = dcmread(io.BytesIO(await asyncio.to_thread(streamed)))
    out = io.BytesIO()
    dcmwrite(out, anonymize_dataset(dcmread(io.BytesIO(data)), share), enforce_file_format=True)
    whole = dcmread(io.BytesIO(out.getvalue()))
    assert copy == whole, "the same data set as anonymizing the object whole"
    assert copy.file_meta == whole.file_meta
    assert str(copy.PatientName) == "Anonymous^42" and copy.PixelData == whole.PixelData


async def test_a_large_object_is_read_a_frame_or_a_chunk_at_a_time(mongo_db) -> None:
    """A 40 MiB object in GridFS: one frame costs about a frame, an anonymized copy (streamed
    to nowhere) a few chunks, whatever the object's size."""
    store = GridFSBlobStore(mongo_db)  # the default chunk size
    await store.setup()
    data, pixels = multiframe(10, 2048, 1024)  # 4 MiB a frame
    key = await store_object(store, data)
    del data
    share = AnonymizationKey.for_share("secret", "bkt_1", "42", "PID-7")

    def frame_7() -> bytes:
        with opened(store, key) as source:
            _, frames = read_frames(source, [7])
            return bytes(next(frames))

    def anonymized_size() -> int:
        with opened(store, key) as source:
            return sum(len(chunk) for chunk in anonymized_chunks(source, share))

    tracemalloc.start()
    try:
        frame = await asyncio.to_thread(frame_7)
        _, frame_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        size = await asyncio.to_thread(anonymized_size)
        _, copy_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frame == pixels[6].tobytes()
    assert size > 40 * MiB
    print(
        f"peak traced memory: one 4 MiB frame {frame_peak / MiB:.1f} MiB, anonymized copy "
        f"of {size / MiB:.0f} MiB {copy_peak / MiB:.1f} MiB"
    )
    assert frame_peak < 4 * MiB + 6 * MiB, "the frame (and its copy to bytes), not the object"
    assert copy_peak < 8 * MiB, "a few chunks at a time, not the object"


# --- operating it: copy a directory into GridFS, verify against the index ----------------


@pytest.mark.parametrize("blob_backend", ["directory"])  # the app stores in the directory
async def test_a_blob_directory_copied_into_gridfs_verifies_against_the_index(
    dicom_app, mongo_db, settings, tmp_path
) -> None:
    """`blobs copy-dir` then `blobs verify --digests`, as an operator runs them (real
    processes): every indexed instance found with its digest; a lost object is reported."""
    _study_uid, files = write_study(tmp_path / "a", series=1, per_series=3)
    assert (await upload(dicom_app, files)).status_code == 200
    env = {
        **os.environ,
        "STUDYSHARE_ENVIRONMENT": "test",
        "STUDYSHARE_MONGO_URL": settings.mongo_url,
        "STUDYSHARE_DATABASE": settings.database_name,
        "STUDYSHARE_BLOB_BACKEND": "gridfs",
    }

    def blobs(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "studyshare.study_store", "blobs", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    copied = blobs("copy-dir", str(settings.blob_dir))
    assert copied.returncode == 0, copied.stderr
    assert json.loads(copied.stdout.splitlines()[-1]) == {"copied": 3, "already_there": 0}
    verified = blobs("verify", "--digests")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    summary = json.loads(verified.stdout.splitlines()[-1])
    assert summary["instances"] == summary["objects"] == 3 and summary["ok"]

    gridfs = GridFSBlobStore(mongo_db)
    lost = await anext(gridfs.keys())
    await gridfs.remove(lost)
    broken = blobs("verify")
    assert broken.returncode == 1
    assert json.loads(broken.stdout.splitlines()[-1])["examples"] == [lost]
