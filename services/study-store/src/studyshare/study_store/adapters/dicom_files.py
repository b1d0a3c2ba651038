"""Reading stored DICOM objects piecewise: the header, one frame, an anonymized copy, without
reading the pixel data whole (a multi-frame object may be gigabytes).

Each function takes a seekable binary file (`BlobStore.open`, from a worker thread). The pixel
data element is found by reading the header up to it (`locate_pixel_data`); a frame is then read
at its offset (native pixel data) or through the encapsulated fragments' offsets
(`pydicom.encaps.get_frame` seeks over the fragments before it). An anonymized copy is the
rewritten header followed by the stored pixel data element copied in chunks.

Objects these shortcuts do not fit (a deflated transfer syntax, elements after the pixel data,
float pixel data) are read whole, as before: they are rare and small.
"""

from __future__ import annotations

import io
import struct
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.encaps import generate_frames, get_frame
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from starlette.concurrency import iterate_in_threadpool

from studyshare.plumbing.logging import get_logger
from studyshare.study_store.adapters.blobstore import CHUNK, BlobStore, opened
from studyshare.study_store.domain.anonymize import AnonymizationKey, anonymize_dataset

log = get_logger(__name__)

PIXEL_DATA = (0x7FE0, 0x0010)
ITEM = (0xFFFE, 0xE000)
SEQUENCE_END = (0xFFFE, 0xE0DD)
UNDEFINED = 0xFFFFFFFF
#: a frame as read: bytes, or a view of the buffer a large native frame was read into
Frame = bytes | memoryview
#: explicit VRs with a 2 reserved bytes + 4 byte length (PS3.5 7.1.2)
LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}

ENCAPSULATED_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}


class NoPixelData(ValueError):
    """The object has no pixel data."""


class NoSuchFrame(ValueError):
    """A frame number beyond the object's frames."""

    def __init__(self, count: int) -> None:
        super().__init__(f"the instance has {count} frame(s)")


@dataclass(frozen=True)
class PixelDataElement:
    """Where the top-level (7FE0,0010) Pixel Data element of an object is."""

    header: Dataset
    """everything before it, file meta included"""
    tag_offset: int
    value_offset: int
    length: int | None
    """its value length; None when undefined (encapsulated)"""

    @property
    def little_endian(self) -> bool:
        return bool(self.header.file_meta.TransferSyntaxUID.is_little_endian)


def read_header(blobs: BlobStore, key: str) -> Dataset:
    """The data set of a stored object up to its pixel data. Blocking."""
    with opened(blobs, key) as source:
        return dcmread(source, stop_before_pixels=True)


def locate_pixel_data(source: BinaryIO) -> PixelDataElement | None:
    """The pixel data element of the object in `source`, or None when it has none or cannot
    be read piecewise (a deflated transfer syntax, float pixel data)."""
    source.seek(0)
    header = dcmread(source, stop_before_pixels=True)
    ts = header.file_meta.get("TransferSyntaxUID")
    if ts is None or ts == DeflatedExplicitVRLittleEndian:
        return None
    tag_offset = source.tell()
    head = source.read(12)
    endian = "<" if ts.is_little_endian else ">"
    if len(head) < 8 or struct.unpack(endian + "HH", head[:4]) != PIXEL_DATA:
        return None
    if ts.is_implicit_VR:
        (length,) = struct.unpack(endian + "L", head[4:8])
        value_offset = tag_offset + 8
    elif head[4:6] in LONG_VRS:
        (length,) = struct.unpack(endian + "L", head[8:12])
        value_offset = tag_offset + 12
    else:
        return None
    return PixelDataElement(
        header, tag_offset, value_offset, None if length == UNDEFINED else length
    )


def pixel_data_end(source: BinaryIO, pixels: PixelDataElement) -> int:
    """The offset just after the pixel data element (walks the fragments' item headers when
    its length is undefined)."""
    if pixels.length is not None:
        return pixels.value_offset + pixels.length
    endian = "<" if pixels.little_endian else ">"
    position = pixels.value_offset
    while True:
        source.seek(position)
        head = source.read(8)
        if len(head) < 8:
            raise ValueError("the encapsulated pixel data has no sequence delimiter")
        group, element, length = struct.unpack(endian + "HHL", head)
        if (group, element) == SEQUENCE_END:
            return position + 8
        if (group, element) != ITEM or length == UNDEFINED:
            raise ValueError("the encapsulated pixel data is malformed")
        position += 8 + length


def frame_count(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


#: the Content-Type of an uncompressed frame: always little endian (PS3.18 8.7.3)
NATIVE_FRAME_MEDIA = f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"


def read_frames(source: BinaryIO, numbers: list[int]) -> tuple[str, Iterator[Frame]]:
    """Check the frame numbers (1-based) against the object, then the Content-Type of its
    frames (media type and `transfer-syntax`, PS3.18 8.7.3) and an iterator reading them one
    at a time: a compressed frame as stored, an uncompressed one as Explicit VR Little Endian
    (big endian pixels are swapped). Blocking."""
    pixels = locate_pixel_data(source)
    if pixels is None:
        source.seek(0)
        return _frames_of_whole(dcmread(source), numbers)
    ds = pixels.header
    count = frame_count(ds)
    if any(n > count for n in numbers):
        raise NoSuchFrame(count)
    ts = ds.file_meta.TransferSyntaxUID
    if pixels.length is None:
        extended = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        endianness = "<" if pixels.little_endian else ">"

        def fragments() -> Iterator[Frame]:
            for n in numbers:
                source.seek(pixels.value_offset)
                yield get_frame(
                    source,
                    n - 1,
                    number_of_frames=count,
                    extended_offsets=extended,
                    endianness=endianness,
                )

        return _encapsulated_media(ts), fragments()
    size = _native_frame_size(ds, pixels.length, count)
    swap = _byte_swap(ds, pixels.little_endian)

    def native() -> Iterator[Frame]:
        for n in numbers:
            source.seek(pixels.value_offset + (n - 1) * size)
            # filled in place (a large frame is not copied again), never larger than what is
            # stored: a header may declare frames its pixel data does not hold
            stored = max(min(size, pixels.length - (n - 1) * size), 0)
            frame = bytearray(stored)
            filled = source.readinto(frame)
            yield swap(memoryview(frame)[:filled])

    return NATIVE_FRAME_MEDIA, native()


def _encapsulated_media(ts: str) -> str:
    return f"{ENCAPSULATED_MEDIA.get(str(ts), 'application/octet-stream')}; transfer-syntax={ts}"


def _byte_swap(ds: Dataset, little_endian: bool) -> Callable[[Frame], Frame]:
    """Big endian 16- or 32-bit pixels as little endian (a frame of bytes is the same)."""
    bits = int(ds.get("BitsAllocated", 8))
    if little_endian or bits not in (16, 32):
        return lambda frame: frame
    big, little = f">u{bits // 8}", f"<u{bits // 8}"
    return lambda frame: memoryview(np.frombuffer(frame, dtype=big).astype(little).tobytes())


def _native_frame_size(ds: Dataset, length: int, count: int) -> int:
    if int(ds.get("BitsAllocated", 8)) >= 8:
        return (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * (int(ds.BitsAllocated) // 8)
        )
    return length // count


def _frames_of_whole(ds: Dataset, numbers: list[int]) -> tuple[str, Iterator[Frame]]:
    if "PixelData" not in ds:
        raise NoPixelData("the object has no pixel data")
    count = frame_count(ds)
    if any(n > count for n in numbers):
        raise NoSuchFrame(count)
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_encapsulated:
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        return _encapsulated_media(ts), iter([frames[n - 1] for n in numbers])
    data = ds.PixelData
    size = _native_frame_size(ds, len(data), count)
    swap = _byte_swap(ds, ts.is_little_endian)
    return NATIVE_FRAME_MEDIA, iter(
        [swap(memoryview(data[(n - 1) * size : n * size])) for n in numbers]
    )


def anonymized_chunks(
    source: BinaryIO, key: AnonymizationKey, *, message: bool = False
) -> Iterator[bytes]:
    """The object rewritten for an anonymized share: its anonymized header, then its pixel
    data element as stored, in chunks. Blocking."""
    pixels = locate_pixel_data(source)
    end = pixel_data_end(source, pixels) if pixels is not None else None
    size = source.seek(0, io.SEEK_END)
    if pixels is None or end != size:
        # no pixel data, or elements after it (which the profile must see): whole
        if pixels is not None:
            log.info("anonymize.whole_object", size=size)
        source.seek(0)
        ds = dcmread(source)
        anonymize_dataset(ds, key, message=message)
        yield _encoded(ds)
        return
    header = pixels.header
    anonymize_dataset(header, key, message=message)
    yield _encoded(header)
    source.seek(pixels.tag_offset)
    remaining = end - pixels.tag_offset
    while remaining > 0:
        chunk = source.read(min(CHUNK, remaining))
        if not chunk:
            raise ValueError("the stored object is shorter than its pixel data")
        remaining -= len(chunk)
        yield chunk


def _encoded(ds: Dataset) -> bytes:
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


async def served_bytes(
    blobs: BlobStore, doc: dict[str, Any], key: AnonymizationKey | None
) -> AsyncIterator[bytes]:
    """The Part 10 bytes of an instance, a chunk at a time: as stored, or rewritten for an
    anonymized share (read in a worker thread)."""
    if key is None:
        async for chunk in blobs.chunks(doc["path"]):
            yield chunk
        return
    async for chunk in iterate_in_threadpool(anonymized_object(blobs, doc, key)):
        yield chunk


def anonymized_object(
    blobs: BlobStore, doc: dict[str, Any], key: AnonymizationKey
) -> Iterable[bytes]:
    """A stored instance rewritten for an anonymized share, in chunks. Blocking."""
    with opened(blobs, doc["path"]) as source:
        yield from anonymized_chunks(source, key, message=doc.get("kind") == "message")
