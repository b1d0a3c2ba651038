"""STOW-RS parts stream to the blob store: the multipart body is split while it arrives, each
part written to a spool object (hashed as it goes; a file, or a GridFS upload), never held in
memory whole (issue 15, 8; issue 17, 1)."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from pathlib import Path

import pytest

from studyshare.study_store.adapters.blobstore import DirectoryBlobStore
from studyshare.study_store.adapters.gridfs_blobstore import GridFSBlobStore
from studyshare.study_store.adapters.multipart import (
    MultipartError,
    MultipartSpooler,
    split_multipart,
)
from studyshare.study_store.domain.exceptions import UploadTooLarge


class Sink:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


def spool(body: bytes, boundary: str, chunk: int) -> list[Sink]:
    sinks: list[Sink] = []

    def open_part(headers: dict[str, str]) -> Sink:
        sinks.append(Sink(headers))
        return sinks[-1]

    spooler = MultipartSpooler(boundary, open_part)
    for start in range(0, len(body), chunk):
        spooler.feed(body[start : start + chunk])
    assert spooler.finish() == len(sinks)
    return sinks


BODY = (
    b"preamble\r\n--b0undary\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--\r\n"
    b"part\r\n--b0undary  \r\n\r\nno headers\r\n--b0undary\r\nContent-Type: text/plain\r\n"
    b"X-Other: 1\r\n\r\n\r\n--b0undary--\r\nepilogue --b0undary"
)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 11, 64, len(BODY)])
def test_parts_split_the_same_whatever_the_chunks(chunk: int) -> None:
    sinks = spool(BODY, "b0undary", chunk)
    assert [(s.headers, bytes(s.data), s.closed) for s in sinks] == [
        ({"content-type": "application/dicom"}, b"first\r\n--\r\npart", True),
        ({}, b"no headers", True),
        ({"content-type": "text/plain", "x-other": "1"}, b"", True),
    ]
    assert [(h, c) for h, c in split_multipart(BODY, "b0undary")][:2] == [
        (s.headers, bytes(s.data)) for s in sinks[:2]
    ]


def test_a_body_cut_inside_a_part_is_refused() -> None:
    with pytest.raises(MultipartError):
        spool(b"--b\r\n\r\nhalf a part", "b", 4)
    with pytest.raises(MultipartError):
        spool(b"--b\r\n" + b"X: y\r\n" * 5000, "b", 1024)


def test_a_body_of_more_parts_than_allowed_is_refused() -> None:
    """Each part costs a parse and an index entry: 20,000 tiny ones took 18 s of one core."""
    body = b"".join(b"--b\r\n\r\nx\r\n" for _ in range(4)) + b"--b--\r\n"
    spooler = MultipartSpooler("b", lambda headers: Sink(headers), max_parts=4)
    spooler.feed(body)
    assert spooler.finish() == 4
    with pytest.raises(UploadTooLarge, match="more than 3 parts"):
        MultipartSpooler("b", lambda headers: Sink(headers), max_parts=3).feed(body)


def spool_large_part(blobs, payload: bytes) -> tuple[list, int]:
    """Feed one part of `payload` through the spooler into `blobs` spool objects (blocking);
    the spool sinks and the peak of traced memory while feeding."""
    body = b"--xyz\r\nContent-Type: application/dicom\r\n\r\n" + payload + b"\r\n--xyz--\r\n"
    sinks = []

    def open_part(headers: dict[str, str]):
        sinks.append(blobs.spool())
        return sinks[-1]

    spooler = MultipartSpooler("xyz", open_part)
    tracemalloc.start()
    try:
        for start in range(0, len(body), 64 * 1024):
            spooler.feed(body[start : start + 64 * 1024])
        spooler.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return sinks, peak


PAYLOAD = bytes(range(256)) * (32 * 1024)  # 8 MiB


async def test_a_large_part_goes_to_disk_not_to_memory(tmp_path) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    files, peak = spool_large_part(blobs, PAYLOAD)
    assert peak < 1024 * 1024, f"peak {peak} bytes while spooling an 8 MiB part"
    (spooled,) = [f.spooled for f in files]
    assert spooled is not None and spooled.size == len(PAYLOAD)
    assert spooled.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert Path(spooled.ref).read_bytes() == PAYLOAD
    key = await blobs.place(spooled, "1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert key == f"1.2.3/1.2.3.4/1.2.3.4.5.{spooled.sha256[:16]}.dcm"
    files[0].discard()
    assert not Path(spooled.ref).exists() and (tmp_path / key).read_bytes() == PAYLOAD


@pytest.mark.infra
async def test_a_large_part_streams_into_gridfs_not_into_memory(mongo_db) -> None:
    blobs = GridFSBlobStore(mongo_db)
    await blobs.setup()
    payload = PAYLOAD * 3  # 24 MiB
    files, peak = await asyncio.to_thread(spool_large_part, blobs, payload)
    # a GridFS chunk being filled, a batch of chunk documents and its encoded message: the
    # same whatever the size of the object
    assert peak < 3 * 1024 * 1024, f"peak {peak} bytes while spooling a 24 MiB part"
    (spooled,) = [f.spooled for f in files]
    assert spooled is not None and spooled.size == len(payload)
    assert spooled.sha256 == hashlib.sha256(payload).hexdigest()
    key = await blobs.place(spooled, "1.2.3", "1.2.3.4", "1.2.3.4.5")
    await asyncio.to_thread(files[0].discard)  # a placed object stays under its key
    assert await blobs.read(key) == payload
    assert [k async for k in blobs.keys()] == [key]
    # an upload that is discarded before it is placed leaves nothing behind
    more, _ = await asyncio.to_thread(spool_large_part, blobs, PAYLOAD[:300_000])
    await asyncio.to_thread(more[0].discard)
    assert await mongo_db["blobs.files"].count_documents({}) == 1
    assert await mongo_db["blobs.chunks"].count_documents({}) == -(-len(payload) // (255 * 1024))
