"""DICOM instances on disk, as received (Part 10 files), addressed by their UIDs.

`<blob_dir>/<study uid>/<series uid>/<sop instance uid>.dcm`. UIDs are checked against the
DICOM UID grammar before they become path components, so no path can escape the directory.
Writes go to a temporary file first and are renamed into place (atomic on POSIX).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from studyshare.study_store.domain.dicom_meta import is_uid

CHUNK = 256 * 1024


class BadUID(ValueError):
    pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> Path:
        for uid in (study_uid, series_uid, sop_instance_uid):
            if not is_uid(uid):
                raise BadUID(f"{uid!r} is not a DICOM UID")
        return self.root / study_uid / series_uid / f"{sop_instance_uid}.dcm"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def absolute(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise BadUID(f"{relative!r} is outside the blob store")
        return path

    def write(self, study_uid: str, series_uid: str, sop_instance_uid: str, data: bytes) -> Path:
        """Store one Part 10 file; writing the same instance again replaces it."""
        path = self.path_for(study_uid, series_uid, sop_instance_uid)
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
