"""multipart/related bodies, both ways.

Received (STOW-RS): `boundary_of` checks the request's media type, `MultipartSpooler` splits
the body while it streams, each part's content going to a sink (a spool file of the blob store)
as it arrives, so memory holds at most one fed chunk plus a delimiter, never a whole part;
`spool` feeds it a request body. `split_multipart` splits a body held whole.

Sent (WADO-RS): `dicom_instances` and `frames` write instances and frames as a
`MultipartAnswer`, in one body with a length when small (up to `INLINE_BYTES`), else streamed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.concurrency import iterate_in_threadpool

from studyshare.study_store.adapters.blobstore import BlobStore
from studyshare.study_store.adapters.dicom_files import Frame, served_bytes
from studyshare.study_store.domain.anonymize import AnonymizationKey
from studyshare.study_store.domain.exceptions import UnsupportedMediaType, UploadTooLarge

MAX_HEADER_BYTES = 16 * 1024
#: an answer up to this many bytes is read into memory and sent with a length; larger ones
#: are streamed
INLINE_BYTES = 1024 * 1024
#: a received body is handed to the spooler (a thread: it writes files) about this much at a
#: time
SPOOL_FEED_BYTES = 1024 * 1024


class MultipartError(ValueError):
    """The body is not a well-formed multipart body."""


class PartSink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def part_headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers


class MultipartSpooler:
    """Feed the body in chunks (`feed`), then `finish`; `open_part(headers)` gives each part's
    sink, closed when the part ends. More than `max_parts` parts refuse the body: each costs
    a parse and an index entry, so a body of tiny parts would buy far more work than its size
    says."""

    def __init__(
        self,
        boundary: str,
        open_part: Callable[[dict[str, str]], PartSink],
        max_parts: int | None = None,
    ) -> None:
        self.delimiter = b"\r\n--" + boundary.encode("latin-1")
        self.open_part = open_part
        self.max_parts = max_parts
        self.buffer = bytearray(b"\r\n")  # the first delimiter may open the body
        self.state = "preamble"
        self.sink: PartSink | None = None
        self.parts = 0

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while self._step():
            pass

    def finish(self) -> int:
        """The number of parts; refuses a body that ends inside a part."""
        if self.state in ("headers", "body"):
            raise MultipartError("the body ends inside a part")
        return self.parts

    def _step(self) -> bool:
        """Advance as far as the buffer allows; False when more input is needed."""
        buf, delimiter = self.buffer, self.delimiter
        if self.state == "preamble":
            i = buf.find(delimiter)
            if i < 0:
                del buf[: max(0, len(buf) - len(delimiter) + 1)]
                return False
            del buf[: i + len(delimiter)]
            self.state = "delimiter"
            return True
        if self.state == "delimiter":
            if len(buf) < 2:
                return False
            if buf[:2] == b"--":
                self.state = "end"
                return True
            i = buf.find(b"\r\n")
            if i < 0:
                if len(buf) > 1024:
                    raise MultipartError("a delimiter line is too long")
                return False
            if buf[:i].strip(b" \t"):
                raise MultipartError("unexpected text after a delimiter")
            del buf[: i + 2]
            self.state = "headers"
            return True
        if self.state == "headers":
            if len(buf) < 2:
                return False
            if buf[:2] == b"\r\n":
                headers: dict[str, str] = {}
                del buf[:2]
            else:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        raise MultipartError("the part headers are too long")
                    return False
                headers = part_headers(bytes(buf[:i]))
                del buf[: i + 4]
            if self.max_parts is not None and self.parts >= self.max_parts:
                raise UploadTooLarge(
                    f"the upload holds more than {self.max_parts} parts: send it in several "
                    "requests"
                )
            self.sink = self.open_part(headers)
            self.parts += 1
            self.state = "body"
            return True
        if self.state == "body":
            assert self.sink is not None
            i = buf.find(delimiter)
            if i < 0:
                safe = len(buf) - len(delimiter) + 1
                if safe > 0:
                    self.sink.write(bytes(buf[:safe]))
                    del buf[:safe]
                return False
            self.sink.write(bytes(buf[:i]))
            self.sink.close()
            self.sink = None
            del buf[: i + len(delimiter)]
            self.state = "delimiter"
            return True
        buf.clear()  # the epilogue after the closing delimiter is ignored
        return False


# --- received ----------------------------------------------------------------------------


def boundary_of(content_type: str) -> str:
    """The boundary of a STOW-RS body: multipart/related; type="application/dicom" only."""
    media_type, *params = [p.strip() for p in content_type.split(";")]
    values = {}
    for param in params:
        name, _, value = param.partition("=")
        values[name.strip().lower()] = value.strip().strip('"')
    if media_type.lower() != "multipart/related":
        raise UnsupportedMediaType("STOW-RS takes multipart/related")
    if values.get("type", "application/dicom").lower() != "application/dicom":
        raise UnsupportedMediaType('only type="application/dicom" parts are accepted')
    if not values.get("boundary"):
        raise UnsupportedMediaType("the multipart body has no boundary")
    return values["boundary"]


async def spool(chunks: AsyncIterable[bytes], spooler: MultipartSpooler, max_bytes: int) -> int:
    """Stream a request body into the spooler's part files; the bytes read."""
    size, pending, pending_size = 0, [], 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge("the upload is larger than this store accepts")
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= SPOOL_FEED_BYTES:
                await asyncio.to_thread(spooler.feed, b"".join(pending))
                pending, pending_size = [], 0
        if pending:
            await asyncio.to_thread(spooler.feed, b"".join(pending))
    except MultipartError as exc:
        raise UnsupportedMediaType(f"the multipart body is malformed: {exc}") from None
    return size


def split_multipart(buffer: Any, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """(headers, content) of each part of a multipart body held in `buffer` (bytes or mmap)."""
    delim = b"--" + boundary.encode()
    start = buffer.find(delim)
    if start < 0:
        return []
    pos = start + len(delim)
    parts = []
    while buffer[pos : pos + 2] != b"--":
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            break
        part_start = line_end + 2
        end = buffer.find(b"\r\n" + delim, part_start)
        if end < 0:
            break
        raw = buffer[part_start:end]
        head, sep, content = bytes(raw).partition(b"\r\n\r\n")
        if not sep:
            if raw[:2] == b"\r\n":
                head, content = b"", bytes(raw[2:])
            else:
                head, content = bytes(raw), b""
        parts.append((part_headers(head), content))
        pos = end + 2 + len(delim)
    return parts


# --- sent --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MultipartAnswer:
    """A multipart/related answer: `body` whole (sent with a length), or `stream`."""

    media_type: str
    body: bytes | None = None
    stream: AsyncIterator[bytes | memoryview] | None = None


class _Writer:
    def __init__(self, part_type: str) -> None:
        self.boundary = secrets.token_hex(16)
        self.media_type = f'multipart/related; type="{part_type}"; boundary={self.boundary}'
        self.tail = f"--{self.boundary}--\r\n".encode()

    def head(self, content_type: str) -> bytes:
        return f"--{self.boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()


async def dicom_instances(
    blobs: BlobStore, docs: list[dict[str, Any]], key: AnonymizationKey | None
) -> MultipartAnswer:
    """The instances as multipart/related: small ones (up to `INLINE_BYTES` in all, as
    received) read at once into one body with a length; others streamed a chunk at a time."""
    out = _Writer("application/dicom")

    def head(doc: dict[str, Any]) -> bytes:
        return out.head(f"application/dicom; transfer-syntax={doc.get('transfer_syntax', '')}")

    if key is None and sum(doc.get("size") or INLINE_BYTES for doc in docs) <= INLINE_BYTES:
        parts = []
        for doc in docs:
            parts += [head(doc), await blobs.read(doc["path"]), b"\r\n"]
        return MultipartAnswer(out.media_type, body=b"".join([*parts, out.tail]))

    async def body() -> AsyncIterator[bytes]:
        for doc in docs:
            yield head(doc)
            async for chunk in served_bytes(blobs, doc, key):
                yield chunk
            yield b"\r\n"
        yield out.tail

    return MultipartAnswer(out.media_type, stream=body())


def frames(media: str, first: list[Frame], rest: Iterator[Frame] | None) -> MultipartAnswer:
    """Frames as multipart/related: the frames read already (`first`) in one body with a
    length, or followed by the `rest`, streamed (each read in a worker thread)."""
    out = _Writer(media.split(";")[0])
    head = out.head(media)
    if rest is None:
        return MultipartAnswer(
            out.media_type,
            body=b"".join([*(part for data in first for part in (head, data, b"\r\n")), out.tail]),
        )

    async def body() -> AsyncIterator[bytes | memoryview]:
        for data in first:
            yield head
            yield data
            yield b"\r\n"
        async for data in iterate_in_threadpool(rest):
            yield head
            yield data
            yield b"\r\n"
        yield out.tail

    return MultipartAnswer(out.media_type, stream=body())
