"""The blob store in MongoDB GridFS: `blobs.files` and `blobs.chunks` in the study store's own
database, on the replica set every process of the service already uses (no other storage to
run, back up or secure; `deploy/README.md` says how to dump and restore it).

The layout is GridFS's (a files document with `length`, `chunkSize`, `uploadDate`, `filename`
= the blob key, `metadata`; chunk documents `{files_id, n, data}` under the unique index
`files_id_1_n_1`), so `mongofiles` and any driver's GridFS bucket read these objects. It is
written and read here with the async driver's collections directly instead of
`AsyncGridFSBucket`, to bound what one stream holds: uploads insert `WRITE_BATCH` chunks per
round trip, downloads fetch `READ_BATCH` chunks per cursor batch (the bucket's download cursor
asks for batches of up to 16 MiB), and a reader seeks by chunk arithmetic (`n = offset //
chunkSize`), so a frame is read without the chunks before it.

A file document is inserted only after all its chunks: a reader never sees a partial object.
Uploads go in under `.incoming/<random>` and are renamed to their key by `place` (one update);
an upload cut short leaves chunks without a file document (or an `.incoming/` file), which
`sweep` removes once older than a day.

Sync callers (the multipart spooler, pydicom in worker threads) reach the event loop the store
was created on through `asyncio.run_coroutine_threadsafe`; they must not run on that loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from bson import Binary, ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.study_store.adapters.blobstore import (
    CHUNK,
    BlobMissing,
    BlobStore,
    Spooled,
    digest_of,
    key_for,
)

T = TypeVar("T")

BUCKET = "blobs"
#: the GridFS default: a chunk document stays far below MongoDB's 16 MiB document limit
DEFAULT_CHUNK_BYTES = 255 * 1024
WRITE_BATCH = 4
READ_BATCH = 4
INCOMING = ".incoming/"
INCOMING_PATTERN = "^" + re.escape(INCOMING)
SWEEP_AFTER = timedelta(days=1)


class BlobCorrupt(OSError):
    """A stored object's chunks do not add up to its length."""


class GridFSBlobStore(BlobStore):
    """See the module docstring."""

    backend = "gridfs"

    def __init__(
        self, db: AsyncDatabase, bucket: str = BUCKET, chunk_size: int = DEFAULT_CHUNK_BYTES
    ) -> None:
        self.db = db
        self.files = db[f"{bucket}.files"]
        self.chunk_docs = db[f"{bucket}.chunks"]
        self.chunk_size = chunk_size
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    # --- bridging worker threads to the loop ---------------------------------------------

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the store's loop from a worker thread and wait for it."""
        loop = self.loop
        if loop is None:
            coroutine.close()
            raise RuntimeError("create the GridFS blob store on its event loop")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coroutine.close()
            raise RuntimeError("a blob's file view blocks: use it from a worker thread")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    # --- setup and housekeeping ----------------------------------------------------------

    async def setup(self) -> None:
        self.loop = asyncio.get_running_loop()
        # the indexes of the GridFS spec, by the names every driver gives them
        await self.files.create_index([("filename", ASCENDING), ("uploadDate", ASCENDING)])
        await self.chunk_docs.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)

    async def sweep(self, older_than: timedelta = SWEEP_AFTER) -> int:
        """Remove uploads cut short more than `older_than` ago: `.incoming/` files and chunks
        without a file document. Returns how many objects went."""
        cutoff = datetime.now(UTC) - older_than
        removed = 0
        stale = self.files.find(
            {"filename": {"$regex": INCOMING_PATTERN}, "uploadDate": {"$lt": cutoff}}, {"_id": 1}
        )
        async for doc in stale:
            await self._delete_id(doc["_id"])
            removed += 1
        orphans = await self.chunk_docs.distinct(
            "files_id", {"n": 0, "files_id": {"$lt": ObjectId.from_datetime(cutoff)}}
        )
        for files_id in orphans:
            if await self.files.find_one({"_id": files_id}, {"_id": 1}) is None:
                await self.chunk_docs.delete_many({"files_id": files_id})
                removed += 1
        return removed

    # --- writing -------------------------------------------------------------------------

    def spool(self) -> GridFSSpool:
        return GridFSSpool(self)

    async def upload(self, filename: str, metadata: dict[str, Any]) -> Upload:
        return Upload(self, filename, metadata)

    async def place(
        self, spooled: Spooled, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> str:
        key = key_for(study_uid, series_uid, sop_instance_uid, spooled.sha256)
        file_id = ObjectId(spooled.ref)
        if await self._exists(key):
            await self._delete_id(file_id)  # the same content is there already
            return key
        renamed = await self.files.update_one(
            {"_id": file_id, "filename": {"$regex": INCOMING_PATTERN}},
            {"$set": {"filename": key, "metadata": {"sha256": spooled.sha256}}},
        )
        if renamed.matched_count != 1:
            raise BlobMissing(f"spooled object {spooled.ref} is gone")
        return key

    async def write(
        self, study_uid: str, series_uid: str, sop_instance_uid: str, data: bytes
    ) -> str:
        digest = digest_of(data)
        key = key_for(study_uid, series_uid, sop_instance_uid, digest)
        if not await self._exists(key):
            upload = await self.upload(key, {"sha256": digest})
            try:
                await upload.write(data)
                await upload.close()
            except BaseException:
                await upload.abort()
                raise
        return key

    async def import_file(self, path: Path, key: str) -> None:
        if await self._exists(key):
            return
        upload = await self.upload(key, {})
        hashed = hashlib.sha256()
        try:
            with path.open("rb") as source:
                while chunk := await asyncio.to_thread(source.read, CHUNK):
                    hashed.update(chunk)
                    await upload.write(chunk)
            upload.metadata = {"sha256": hashed.hexdigest()}
            await upload.close()
        except BaseException:
            await upload.abort()
            raise

    async def remove(self, key: str) -> None:
        async for doc in self.files.find({"filename": key}, {"_id": 1}):
            await self._delete_id(doc["_id"])

    async def _delete_id(self, file_id: Any) -> None:
        # the file document first: a reader never finds a file without its chunks
        await self.files.delete_one({"_id": file_id})
        await self.chunk_docs.delete_many({"files_id": file_id})

    # --- reading -------------------------------------------------------------------------

    async def _exists(self, key: str) -> bool:
        return await self.files.find_one({"filename": key}, {"_id": 1}) is not None

    async def file(self, key: str) -> dict[str, Any]:
        """The newest file document named `key` (two uploads of the same content may race
        to one key: they are the same bytes)."""
        doc = await self.files.find_one({"filename": key}, sort=[("uploadDate", DESCENDING)])
        if doc is None:
            raise BlobMissing(key)
        return doc

    async def _file_by_id(self, file_id: ObjectId) -> dict[str, Any]:
        doc = await self.files.find_one({"_id": file_id})
        if doc is None:
            raise BlobMissing(str(file_id))
        return doc

    async def size(self, key: str) -> int:
        return int((await self.file(key))["length"])

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        doc = await self.file(key)
        async for data in self.chunk_range(doc, 0, chunk_count(doc)):
            yield data

    async def chunk_range(self, doc: dict[str, Any], first: int, stop: int) -> AsyncIterator[bytes]:
        """The data of chunks `first` ... `stop - 1` of a file, checked for gaps and size."""
        if first >= stop:
            return
        cursor = (
            self.chunk_docs.find(
                {"files_id": doc["_id"], "n": {"$gte": first, "$lt": stop}}, {"n": 1, "data": 1}
            )
            .sort("n", ASCENDING)
            .batch_size(READ_BATCH)
        )
        expected = first
        async with cursor:
            async for chunk in cursor:
                data = bytes(chunk["data"])
                if chunk["n"] != expected or len(data) != chunk_length(doc, expected):
                    raise BlobCorrupt(f"{doc['filename']}: chunk {expected} is missing or cut")
                expected += 1
                yield data
        if expected != stop:
            raise BlobCorrupt(f"{doc['filename']}: chunk {expected} is missing")

    def open(self, key: str) -> BinaryIO:
        return self._reader(self.call(self.file(key)))

    def open_spooled(self, spooled: Spooled) -> BinaryIO:
        return self._reader(self.call(self._file_by_id(ObjectId(spooled.ref))))

    def _reader(self, doc: dict[str, Any]) -> BinaryIO:
        # not wrapped in io.BufferedReader: pydicom takes one for a named file on disk
        return ChunkReader(self, doc)  # type: ignore[return-value]

    async def keys(self) -> AsyncIterator[str]:
        async for doc in self.files.find(
            {"filename": {"$not": {"$regex": INCOMING_PATTERN}}}, {"filename": 1}
        ).sort("filename", ASCENDING):
            yield doc["filename"]


def chunk_count(doc: dict[str, Any]) -> int:
    return -(-int(doc["length"]) // int(doc["chunkSize"]))


def chunk_length(doc: dict[str, Any], n: int) -> int:
    size, length = int(doc["chunkSize"]), int(doc["length"])
    return max(0, min(size, length - n * size))


class Upload:
    """One object being written: chunks go in `WRITE_BATCH` at a time, the file document
    last (`close`); `abort` removes what was written."""

    def __init__(self, store: GridFSBlobStore, filename: str, metadata: dict[str, Any]) -> None:
        self.store = store
        self.file_id = ObjectId()
        self.filename = filename
        self.metadata = metadata
        self.buffer = bytearray()
        self.pending: list[dict[str, Any]] = []
        self.n = 0
        self.length = 0

    async def write(self, data: bytes) -> None:
        size = self.store.chunk_size
        self.buffer += data
        self.length += len(data)
        while len(self.buffer) >= size:
            self._chunk(bytes(self.buffer[:size]))
            del self.buffer[:size]
            if len(self.pending) >= WRITE_BATCH:
                await self._flush()

    def _chunk(self, data: bytes) -> None:
        self.pending.append({"files_id": self.file_id, "n": self.n, "data": Binary(data)})
        self.n += 1

    async def _flush(self) -> None:
        if self.pending:
            pending, self.pending = self.pending, []
            await self.store.chunk_docs.insert_many(pending, ordered=True)

    async def close(self) -> None:
        if self.buffer:
            self._chunk(bytes(self.buffer))
            self.buffer.clear()
        await self._flush()
        await self.store.files.insert_one(
            {
                "_id": self.file_id,
                "filename": self.filename,
                "length": self.length,
                "chunkSize": self.store.chunk_size,
                "uploadDate": datetime.now(UTC),
                "metadata": self.metadata,
            }
        )

    async def abort(self) -> None:
        self.pending.clear()
        await self.store.chunk_docs.delete_many({"files_id": self.file_id})


class GridFSSpool:
    """A spool object for the multipart spooler's worker thread: an `.incoming/` upload."""

    def __init__(self, store: GridFSBlobStore) -> None:
        self.store = store
        self._upload = store.call(store.upload(f"{INCOMING}{uuid.uuid4().hex}", {}))
        self._hash = hashlib.sha256()
        self.size = 0
        self.spooled: Spooled | None = None
        self._closed = False

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        self.store.call(self._upload.write(data))

    def close(self) -> None:
        if self.spooled is None:
            self.store.call(self._upload.close())
            self._closed = True
            self.spooled = Spooled(str(self._upload.file_id), self.size, self._hash.hexdigest())

    def discard(self) -> None:
        """Drop the upload unless `place` renamed it to its key."""
        if not self._closed:
            self.store.call(self._upload.abort())
            return
        self.store.call(self._discard_incoming())

    async def _discard_incoming(self) -> None:
        doc = await self.store.files.find_one(
            {"_id": self._upload.file_id, "filename": self._upload.filename}, {"_id": 1}
        )
        if doc is not None:
            await self.store._delete_id(self._upload.file_id)


class ChunkReader(io.RawIOBase):
    """A stored object as a seekable binary file for a worker thread. A read fetches the
    chunks under it (one query), keeping the last one for the small reads that follow; reads
    return all the bytes asked for up to the end (pydicom relies on it)."""

    def __init__(self, store: GridFSBlobStore, doc: dict[str, Any]) -> None:
        self.store = store
        self.doc = doc
        self.length = int(doc["length"])
        self.chunk_size = int(doc["chunkSize"])
        self.position = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise OSError(22, "negative seek position")
        self.position = base + offset
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        end = self.length if size is None or size < 0 else min(self.length, self.position + size)
        if end <= self.position:
            return b""
        n, start = divmod(self.position, self.chunk_size)
        if end <= (n + 1) * self.chunk_size:  # within one chunk: the cached one, mostly
            if self._cached is None or self._cached[0] != n:
                self._cached = (n, self._fetch(n))
            data = self._cached[1][start : start + end - self.position]
            self.position = end
            return data
        buffer = bytearray(end - self.position)
        self.readinto(buffer)
        return bytes(buffer)

    def _fetch(self, n: int) -> bytes:
        async def one() -> bytes:
            return b"".join([chunk async for chunk in self.store.chunk_range(self.doc, n, n + 1)])

        return self.store.call(one())

    def readinto(self, buffer: Any) -> int:
        """Fill `buffer` from the position: the chunks under it are fetched in one query and
        copied in as they arrive (no copy of the whole range in between)."""
        view = memoryview(buffer).cast("B")
        end = min(self.length, self.position + len(view))
        if end <= self.position:
            return 0
        first, stop = self.position // self.chunk_size, -(-end // self.chunk_size)
        skip = self.position - first * self.chunk_size

        async def fill() -> None:
            filled, n = 0, first
            async for chunk in self.store.chunk_range(self.doc, first, stop):
                piece = memoryview(chunk)[skip if n == first else 0 :]
                piece = piece[: len(view) - filled]
                view[filled : filled + len(piece)] = piece
                filled += len(piece)
                self._cached = (n, chunk)
                n += 1

        self.store.call(fill())
        count = end - self.position
        self.position = end
        return count

    def readall(self) -> bytes:
        return self.read(-1)
