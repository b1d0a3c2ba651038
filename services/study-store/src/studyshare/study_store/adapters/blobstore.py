"""DICOM instances on disk, as received (Part 10 files), addressed by their UIDs.

`<blob_dir>/<study uid>/<series uid>/<sop instance uid>.<content digest>.dcm` (instances
stored before the digest was part of the name: `<sop instance uid>.dcm`). UIDs are checked
against the DICOM UID grammar before they become path components, so no path can escape the
directory. The digest in the name means a file, once indexed, is never overwritten: another
content of the same instance goes to another file (and is refused by the ingest).

Writes go to a temporary file first and are linked or renamed into place (atomic on POSIX).
Uploads stream into `spool()` files under `<blob_dir>/.incoming/` (hashed while written), so a
STOW-RS part is never held in memory whole.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from studyshare.study_store.domain.dicom_meta import is_uid

CHUNK = 256 * 1024


class BadUID(ValueError):
    pass


DIGEST_IN_NAME = 16


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Spooled:
    """One received object on disk (a temporary file), with its size and SHA-256."""

    path: Path
    size: int
    sha256: str


class SpoolFile:
    """A temporary file in the blob store, hashed and counted as it is written."""

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
            self.spooled = Spooled(self.path, self.size, self._hash.hexdigest())

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(
        self, study_uid: str, series_uid: str, sop_instance_uid: str, digest: str | None = None
    ) -> Path:
        for uid in (study_uid, series_uid, sop_instance_uid):
            if not is_uid(uid):
                raise BadUID(f"{uid!r} is not a DICOM UID")
        name = f"{sop_instance_uid}.{digest[:DIGEST_IN_NAME]}" if digest else sop_instance_uid
        return self.root / study_uid / series_uid / f"{name}.dcm"

    def spool(self) -> SpoolFile:
        """A new temporary file for one received object (discard it when done)."""
        return SpoolFile(self.root / ".incoming")

    def place(
        self, spooled: Spooled, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> Path:
        """Link a spooled object into its place (named by its digest: the same content may
        already be there, other content never is)."""
        path = self.path_for(study_uid, series_uid, sop_instance_uid, spooled.sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(spooled.path, path)
        except FileExistsError:
            pass
        return path

    def digest(self, relative: str) -> str:
        """The SHA-256 of a stored file (for instances indexed before digests were kept)."""
        hashed = hashlib.sha256()
        for chunk in self.chunks(relative):
            hashed.update(chunk)
        return hashed.hexdigest()

    def remove(self, relative: str) -> None:
        self.absolute(relative).unlink(missing_ok=True)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def absolute(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise BadUID(f"{relative!r} is outside the blob store")
        return path

    def write(
        self,
        study_uid: str,
        series_uid: str,
        sop_instance_uid: str,
        data: bytes,
        digest: str | None = None,
    ) -> Path:
        """Store one Part 10 file, named by `digest` (its SHA-256) when given."""
        path = self.path_for(study_uid, series_uid, sop_instance_uid, digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def read(self, relative: str) -> bytes:
        return self.absolute(relative).read_bytes()

    def chunks(self, relative: str) -> Iterator[bytes]:
        with self.absolute(relative).open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk

    def size(self, relative: str) -> int:
        return self.absolute(relative).stat().st_size

    def remove_study(self, study_uid: str) -> None:
        if is_uid(study_uid):
            shutil.rmtree(self.root / study_uid, ignore_errors=True)
