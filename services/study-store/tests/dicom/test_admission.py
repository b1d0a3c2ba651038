"""What the store takes in (`domain.admission`), and what its serving spends on an object
taken before that rule: crafted objects a review measured, each a few bytes to a few MB that
cost gigabytes (issue: a review of DICOM input)."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)

from studyshare.study_store.adapters.blobstore import DirectoryBlobStore
from studyshare.study_store.adapters.dicom_files import read_frames
from studyshare.study_store.adapters.pixels import render
from studyshare.study_store.domain.admission import check_transfer_syntax
from studyshare.study_store.domain.dicom_meta import NotAnInstance
from studyshare.study_store.domain.exceptions import NotRenderable
from studyshare.study_store.service_layer.ingest import parse, parse_file

from .conftest import write_study
from .test_dicomweb import upload


def crafted(ts=ExplicitVRLittleEndian, rows=16, columns=16, frames=None, pixels=None) -> bytes:
    """A CT image object whose header says `rows` x `columns` x `frames` 16-bit pixels and
    whose pixel data is `pixels` (by default, as many as it says)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName = "CT", "Crafted^Object"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels if pixels is not None else b"\0\0" * rows * columns * (frames or 1)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_an_ordinary_image_is_taken():
    assert parse(crafted()).facts.rows == 16


def test_a_deflated_object_is_refused_before_it_is_inflated():
    """pydicom inflates a deflated data set whole as it reads it: 510 KB cost 1.1 GB."""
    bomb = crafted(DeflatedExplicitVRLittleEndian, 1024, 1024)
    tracemalloc.start()
    try:
        with pytest.raises(NotAnInstance, match="deflated is not"):
            parse(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, "refused from the file meta, before the data set"


def test_a_frame_larger_than_the_store_takes_is_refused():
    """A 727-byte JPEG 2000 of 13,000 x 13,000 cost 2.9 GB to render a thumbnail."""
    with pytest.raises(NotAnInstance, match="more than the 67,108,864 pixels"):
        parse(crafted(rows=13000, columns=13000, pixels=b"\0\0"))


def test_pixel_data_shorter_than_its_header_declares_is_refused():
    """1,000 declared frames of 2,048 x 2,048 in 2 bytes had the frames route allocate GBs."""
    with pytest.raises(NotAnInstance, match="less than the 8,388,608,000"):
        parse(crafted(rows=2048, columns=2048, frames=1000, pixels=b"\0\0"))
    # a received file is read with its large elements deferred: their length is still known
    short = crafted(rows=512, columns=512, frames=400, pixels=b"\0" * 200_000)
    with pytest.raises(NotAnInstance, match="holds 200,000 bytes"):
        parse_file(io.BytesIO(short), "0" * 64, len(short))


def test_a_transfer_syntax_that_is_none_is_refused():
    """It went into the part headers of multipart answers (pydicom writes no such file; a
    crafted one reads, so the rule is asked directly)."""
    with pytest.raises(NotAnInstance, match="is not one the store takes"):
        check_transfer_syntax("1.2.840.10008.1.2.1\r\nContent-Type: text/html")


def test_frames_of_an_object_stored_before_the_rule_cost_what_is_stored():
    """The frames route allocated each declared frame whole, whatever the pixel data held."""
    stored = io.BytesIO(crafted(rows=2048, columns=2048, frames=1000, pixels=b"\0\0"))
    tracemalloc.start()
    try:
        _, frames = read_frames(stored, list(range(1, 21)))
        held = list(frames)  # as `adapters.pixels.read_frames` holds the first ones
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(len(f) for f in held) == 2
    assert peak < 4 * 1024 * 1024, f"{peak:,} bytes for 2 stored"


async def test_an_object_stored_before_the_rule_is_not_decoded_to_render(tmp_path: Path):
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    path = tmp_path / "huge.dcm"
    path.write_bytes(crafted(rows=13000, columns=13000, pixels=b"\0\0"))
    await blobs.import_file(path, "huge.dcm")
    with pytest.raises(NotRenderable, match="more than the 67,108,864 pixels"):
        render(blobs, "huge.dcm", 1, "image/png", None, 90, (128, 128))


async def test_stow_reports_a_refused_object_and_stores_the_others(dicom_app, tmp_path):
    _uid, files = write_study(tmp_path / "a", series=1, per_series=1)
    deflated = dcmread(files[0])
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    deflated.save_as(out, enforce_file_format=True)
    response = await upload(dicom_app, [files[0], out.getvalue()])
    assert response.status_code == 202, response.text
    body = response.json()
    assert len(body["00081199"]["Value"]) == 1
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


def test_a_uid_with_a_line_break_is_no_uid():
    """Blob keys and paths are built from checked UIDs; `$` let a trailing line break in."""
    from studyshare.study_store.domain.dicom_meta import is_uid

    assert is_uid("1.2.840.10008") and not is_uid("1.2.840.10008\n")
