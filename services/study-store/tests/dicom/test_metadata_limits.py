"""An instance's metadata (its DICOM JSON, kept in MongoDB and served by WADO-RS) stays within
what MongoDB stores: long values are left out, nesting is capped. Pure: no infrastructure."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import bson
import pytest
from pydicom import Dataset, dcmread
from pydicom.sequence import Sequence

from studyshare.study_store.domain import dicom_meta
from studyshare.study_store.domain.dicom_meta import PIXEL_TAGS, instance_json
from studyshare.study_store.service_layer.ingest import parse, parse_file

from .conftest import write_study

MONGO_DOCUMENT_BYTES = 16 * 1024 * 1024
MONGO_NESTING = 100
LONG_TEXT = 0x0018A003  # Contribution Description, UT
PRIVATE_BLOB = 0x00091010  # (0009,10xx) of the private creator "ACME 1.0"


def ct_file(tmp_path: Path) -> Path:
    return write_study(tmp_path / "study", series=1, per_series=1)[1][0]


def as_file(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def parsed_file(tmp_path: Path, data: bytes):
    """As the C-STORE receiver reads an object: from a file, its long elements left unread."""
    path = tmp_path / "object.dcm"
    path.write_bytes(data)
    return parse_file(path, hashlib.sha256(data).hexdigest(), len(data))


def as_stored(ds: Dataset) -> dict:
    """What the previous `instance_json` stored: pydicom's DICOM JSON without pixel data."""
    header = Dataset()
    for tag in ds.keys():
        if tag not in PIXEL_TAGS:
            header.add(ds[tag])
    return header.to_json_dict()


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nested(ds: Dataset, levels: int) -> Dataset:
    """`ds` with a Content Sequence nested `levels` deep."""
    current = ds
    for level in range(levels):
        item = Dataset()
        item.ValueType = "CONTAINER"
        item.CodeValue = str(level)
        item.PersonName = "Doe^Jane"  # a PN value nests one level more
        current.ContentSequence = Sequence([item])
        current = item
    return ds


def test_an_ordinary_ct_headers_metadata_is_unchanged(tmp_path):
    path = ct_file(tmp_path)
    data = path.read_bytes()
    expected = as_stored(dcmread(path))

    assert parse(data).meta == expected
    assert parsed_file(tmp_path, data).meta == expected
    with_pixels = instance_json(dcmread(path), bulk_uri="https://h/frames/1")
    assert with_pixels == {
        **expected,
        "7FE00010": {"vr": "OW", "BulkDataURI": "https://h/frames/1"},
    }


def test_a_long_text_and_a_long_private_binary_are_left_out_of_the_metadata(tmp_path):
    """A 1 MB text and a 1 MB private binary element were copied into the metadata (the text
    whole, the binary read from the file to be dropped with an empty BulkDataURI): objects of a
    few such elements made documents MongoDB refused, and the whole STOW batch failed."""
    ds = dcmread(ct_file(tmp_path))
    expected = as_stored(ds)
    ds.add_new(LONG_TEXT, "UT", "x" * 1_000_000)
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x10, "OB", b"\x01" * 1_000_000)
    expected["00090010"] = {"vr": "LO", "Value": ["ACME 1.0"]}  # the private creator stays
    data = as_file(ds)

    for meta in (instance_json(ds), parse(data).meta, parsed_file(tmp_path, data).meta):
        assert len(json.dumps(meta)) < 64 * 1024
        assert "0018A003" not in meta and "00091010" not in meta, "left out, not an empty URI"
        assert meta == expected, "every other element is kept as it was"


def test_a_long_element_is_left_out_unread(tmp_path):
    """The receiver reads a file with its long elements deferred; a 300 MB private element was
    read whole (385 MB at ingest) only to be left out."""
    ds = dcmread(ct_file(tmp_path))
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x10, "OB", b"\x01" * 1_000_000)
    header = dcmread(io.BytesIO(as_file(ds)), defer_size=64 * 1024)

    instance_json(header)

    assert header.get_item(PRIVATE_BLOB, keep_deferred=True).value is None, "never read"


def test_short_values_in_sequences_stay_and_long_ones_go(tmp_path):
    ds = dcmread(ct_file(tmp_path))
    item = Dataset()
    item.CodeValue = "121106"
    item.add_new(0x0040A160, "UT", "y" * 100_000)  # Text Value
    ds.ContentSequence = Sequence([item])

    meta = parse(as_file(ds)).meta

    assert meta["0040A730"] == {
        "vr": "SQ",
        "Value": [{"00080100": {"vr": "SH", "Value": ["121106"]}}],
    }


@pytest.mark.parametrize("undefined_length", [False, True])
def test_a_structure_set_whose_contours_exceed_a_document_keeps_its_other_attributes(
    tmp_path, undefined_length
):
    """A realistic RTSTRUCT (14.5 MB, its contours in thousands of short Contour Data values)
    gave 22.4 MB of BSON: over MongoDB's 16 MB, the STOW batch failed (500). The contours
    (a top-level sequence) are left out; the structure set's other attributes stay."""
    ds = dcmread(ct_file(tmp_path))
    del ds.PixelData
    contour = Dataset()
    contour.ContourGeometricType = "CLOSED_PLANAR"
    contour.NumberOfContourPoints = 400
    contour.ContourData = ["-123.4567"] * 1200  # about 12 KB: under the per-element limit
    roi = Dataset()
    roi.ReferencedROINumber = 1
    roi.ContourSequence = Sequence([contour] * 1100)
    ds.ROIContourSequence = Sequence([roi])
    ds["ROIContourSequence"].is_undefined_length = undefined_length
    structure = Dataset()
    structure.ROINumber = 1
    structure.ROIName = "GTV"
    ds.StructureSetROISequence = Sequence([structure])
    data = as_file(ds)
    assert len(data) > 12_000_000

    meta = parsed_file(tmp_path, data).meta

    assert len(bson.encode({"meta": meta})) < MONGO_DOCUMENT_BYTES
    assert "30060039" not in meta, "the contours are left out"
    assert meta["30060020"]["Value"][0]["30060026"] == {"vr": "LO", "Value": ["GTV"]}
    assert meta["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}


def test_sequences_nested_deeper_than_the_cap_are_refused_with_a_reason(tmp_path):
    """40 nested sequences made a document nested deeper than MongoDB's 100 levels: the batch
    failed. The object is refused as one that cannot be parsed (STOW: its failure reason,
    C-STORE: 0xC000 Cannot understand), the others of its upload are stored."""
    assert_refused(tmp_path, 40)
    assert_refused(tmp_path, dicom_meta.MAX_SEQUENCE_DEPTH + 1)


def assert_refused(tmp_path: Path, levels: int) -> None:
    data = as_file(nested(dcmread(ct_file(tmp_path)), levels))
    with pytest.raises(ValueError, match=r"sequences are nested more than \d+ deep"):
        parse(data)  # STOW-RS
    with pytest.raises(ValueError, match=r"sequences are nested more than \d+ deep"):
        parsed_file(tmp_path, data)  # C-STORE


def test_sequences_nested_as_deep_as_the_cap_make_a_document_mongodb_stores(tmp_path):
    ds = nested(dcmread(ct_file(tmp_path)), dicom_meta.MAX_SEQUENCE_DEPTH)

    meta = parse(as_file(ds)).meta

    # the instance document holds `meta`; an insert command holds the document in a list
    assert depth({"documents": [{"meta": meta}]}) < MONGO_NESTING


def test_many_elements_each_under_the_limit_still_make_a_document_mongodb_stores(tmp_path):
    """Each element short enough, all together too long: the longest are left out."""
    ds = dcmread(ct_file(tmp_path))
    expected = as_stored(ds)
    for group in (0x0009, 0x0011, 0x0013, 0x0015, 0x0017):
        block = ds.private_block(group, "ACME 1.0", create=True)
        for offset in range(0x10, 0x100):
            block.add_new(offset, "UT", "z" * 15_000)

    meta = parsed_file(tmp_path, as_file(ds)).meta

    assert len(bson.encode({"meta": meta})) < MONGO_DOCUMENT_BYTES
    assert {key: meta[key] for key in expected} == expected
