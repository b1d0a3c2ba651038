"""Where the DICOM files live: one interface (`BlobStore`), two backends.

- `DirectoryBlobStore` (`blob_backend=directory`, the local default): files under `blob_dir`.
- `GridFSBlobStore` (`blob_backend=gridfs`, Kubernetes): MongoDB GridFS in the service's own
  database (`adapters.gridfs_blobstore`), shared by every process of the study store and as
  durable as the replica set.

An object is addressed by its key, `<study uid>/<series uid>/<sop instance uid>.<digest>.dcm`
(the first 16 hex digits of its SHA-256; instances stored before the digest was part of the
name have `<sop instance uid>.dcm`). The key is what the instance index keeps (`path`), the
same in both backends, so a directory can be copied into GridFS key for key. UIDs are checked
against the DICOM UID grammar before they become a key, so no key can escape the directory. A
key, once written, never changes content: other content of the same instance has another key
(and is refused by the ingest).

Nothing here holds a whole object in memory: uploads stream into `spool()` sinks (hashed as
they are written) and are then `place`d under their key; reads are `chunks()` (async) or
`open()`, a seekable binary file for worker threads (pydicom reads only what it needs from
it: the header, one frame).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar, Protocol

from studyshare.study_store.domain.dicom_meta import is_uid

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from studyshare.study_store.settings import StudyStoreSettings

CHUNK = 256 * 1024
DIGEST_IN_NAME = 16


class BadUID(ValueError):
    pass


class BlobMissing(FileNotFoundError):
    """No object is stored under this key."""


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_for(
    study_uid: str, series_uid: str, sop_instance_uid: str, digest: str | None = None
) -> str:
    """The key of an instance's object (see the module docstring)."""
    for uid in (study_uid, series_uid, sop_instance_uid):
        if not is_uid(uid):
            raise BadUID(f"{uid!r} is not a DICOM UID")
    name = f"{sop_instance_uid}.{digest[:DIGEST_IN_NAME]}" if digest else sop_instance_uid
    return f"{study_uid}/{series_uid}/{name}.dcm"


@dataclass(frozen=True)
class Spooled:
    """One received object in the store's spool (not yet under its key): `ref` says where
    (a file path, a GridFS file id), with its size and SHA-256."""

    ref: str
    size: int
    sha256: str


class SpoolSink(Protocol):
    """A spool object being written: `write` as it arrives, `close` (then `spooled` is set),
    `discard` when done with it (a placed object stays under its key). Called from a worker
    thread (the multipart spooler's)."""

    spooled: Spooled | None

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def discard(self) -> None: ...


class BlobStore(ABC):
    """Content-named DICOM objects; see the module docstring."""

    backend: ClassVar[str]

    @abstractmethod
    async def setup(self) -> None:
        """Prepare the store (directories, indexes); idempotent."""

    @abstractmethod
    def spool(self) -> SpoolSink:
        """A new spool object (from a worker thread; discard it when done)."""

    @abstractmethod
    async def place(
        self, spooled: Spooled, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> str:
        """Put a spooled object under its key (named by its digest: the same content may
        already be there, other content never is); returns the key."""

    @abstractmethod
    async def write(
        self, study_uid: str, series_uid: str, sop_instance_uid: str, data: bytes
    ) -> str:
        """Store one small Part 10 object held in memory; returns its key."""

    async def write_file(
        self, path: Path, study_uid: str, series_uid: str, sop_instance_uid: str, sha256: str
    ) -> str:
        """Store a Part 10 file from local disk (streamed; `sha256` is its digest)."""
        key = key_for(study_uid, series_uid, sop_instance_uid, sha256)
        await self.import_file(path, key)
        return key

    @abstractmethod
    async def import_file(self, path: Path, key: str) -> None:
        """Store a file from local disk under `key` as it is, streamed (nothing when the key
        is there: a key never changes content)."""

    @abstractmethod
    async def remove(self, key: str) -> None:
        """Delete the object (no error when it is not there)."""

    @abstractmethod
    async def size(self, key: str) -> int: ...

    @abstractmethod
    def chunks(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes, a chunk at a time."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """The object as a seekable binary file, for a worker thread (never the event
        loop's); close it when done."""

    @abstractmethod
    def open_spooled(self, spooled: Spooled) -> BinaryIO:
        """A spooled object as a seekable binary file, for a worker thread."""

    @abstractmethod
    def keys(self) -> AsyncIterator[str]:
        """Every key in the store (operations: verify, copy)."""

    async def read(self, key: str) -> bytes:
        """A small object whole (callers check the size first)."""
        return b"".join([chunk async for chunk in self.chunks(key)])

    async def digest(self, key: str) -> str:
        """The SHA-256 of a stored object (for instances indexed before digests were kept)."""
        hashed = hashlib.sha256()
        async for chunk in self.chunks(key):
            hashed.update(chunk)
        return hashed.hexdigest()

    @asynccontextmanager
    async def local_file(self, key: str) -> AsyncIterator[Path]:
        """The object as a file on local disk, for tools that take only a path (pynetdicom's
        chunked C-STORE): a copy in the temporary directory, streamed, removed afterwards."""
        fd, name = tempfile.mkstemp(prefix="blob-", suffix=".dcm")
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in self.chunks(key):
                    await asyncio.to_thread(out.write, chunk)
            yield Path(name)
        finally:
            await asyncio.to_thread(os.unlink, name)


def blob_store(settings: StudyStoreSettings, db: AsyncDatabase) -> BlobStore:
    """The store `settings.blob_backend` names (`db` is the service's own database)."""
    if settings.blob_backend == "gridfs":
        from studyshare.study_store.adapters.gridfs_blobstore import GridFSBlobStore

        return GridFSBlobStore(db, chunk_size=settings.blob_chunk_bytes)
    return DirectoryBlobStore(settings.blob_dir)


# --- a directory -----------------------------------------------------------------------


class SpoolFile:
    """A temporary file in the blob directory, hashed and counted as it is written."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix="part-")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.spooled: Spooled | None = None

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def close(self) -> None:
        """Flush to disk (the object is safe once the upload is acknowledged)."""
        if self.spooled is None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.spooled = Spooled(str(self.path), self.size, self._hash.hexdigest())

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class DirectoryBlobStore(BlobStore):
    """Files under `root`: `<root>/<key>`; spool files under `<root>/.incoming/`, linked into
    place; other writes go to a temporary file first and are renamed into place (atomic on
    POSIX), fsynced before the key is returned."""

    backend = "directory"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    async def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def absolute(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise BadUID(f"{key!r} is outside the blob store")
        return path

    def spool(self) -> SpoolFile:
        return SpoolFile(self.root / ".incoming")

    async def place(
        self, spooled: Spooled, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> str:
        key = key_for(study_uid, series_uid, sop_instance_uid, spooled.sha256)
        await asyncio.to_thread(self._link, Path(spooled.ref), self.root / key)
        return key

    @staticmethod
    def _link(source: Path, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, path)
        except FileExistsError:
            pass

    async def write(
        self, study_uid: str, series_uid: str, sop_instance_uid: str, data: bytes
    ) -> str:
        key = key_for(study_uid, series_uid, sop_instance_uid, digest_of(data))
        await asyncio.to_thread(self._write, self.root / key, [data])
        return key

    async def import_file(self, path: Path, key: str) -> None:
        target = self.absolute(key)
        if not await asyncio.to_thread(target.exists):
            await asyncio.to_thread(self._write, target, self._file_chunks(path))

    @staticmethod
    def _file_chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk

    @staticmethod
    def _write(path: Path, chunks: Iterator[bytes] | list[bytes]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def remove(self, key: str) -> None:
        await asyncio.to_thread(self.absolute(key).unlink, missing_ok=True)

    async def size(self, key: str) -> int:
        try:
            return self.absolute(key).stat().st_size
        except FileNotFoundError:
            raise BlobMissing(key) from None

    async def read(self, key: str) -> bytes:
        # small objects only (WADO-RS answers up to 1 MiB this way): one read, on the loop
        try:
            return self.absolute(key).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(key) from None

    async def chunks(self, key: str) -> AsyncIterator[bytes]:
        source = await asyncio.to_thread(self.open, key)
        try:
            while chunk := await asyncio.to_thread(source.read, CHUNK):
                yield chunk
        finally:
            source.close()

    def open(self, key: str) -> BinaryIO:
        try:
            return self.absolute(key).open("rb")
        except FileNotFoundError:
            raise BlobMissing(key) from None

    def open_spooled(self, spooled: Spooled) -> BinaryIO:
        return Path(spooled.ref).open("rb")

    async def keys(self) -> AsyncIterator[str]:
        for path in await asyncio.to_thread(lambda: sorted(self.root.rglob("*.dcm"))):
            relative = path.relative_to(self.root)
            if not relative.parts[0].startswith(".") and not path.name.startswith("."):
                yield str(relative)

    @asynccontextmanager
    async def local_file(self, key: str) -> AsyncIterator[Path]:
        path = self.absolute(key)
        if not path.is_file():
            raise BlobMissing(key)
        yield path


@contextmanager
def opened(store: BlobStore, key: str) -> Iterator[BinaryIO]:
    """`store.open(key)`, closed afterwards (for a worker thread)."""
    source = store.open(key)
    try:
        yield source
    finally:
        source.close()
