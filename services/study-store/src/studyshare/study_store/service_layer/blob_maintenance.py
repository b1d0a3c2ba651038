"""Operating the blob store: verify it against the instance index, copy a blob directory into
the configured store, sweep uploads cut short (`python -m studyshare.study_store blobs ...`).

After a restore, `verify` says whether every indexed instance has its object (and, with
`digests`, whether each object's SHA-256 is the one indexed); it also counts the objects no
instance refers to (left by uploads refused after their objects were written).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.study_store.adapters.blobstore import BlobMissing, BlobStore, DirectoryBlobStore
from studyshare.study_store.adapters.instances import InstanceIndex

SHOWN = 20


@dataclass
class Verification:
    instances: int = 0
    objects: int = 0
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    wrong_digest: list[str] = field(default_factory=list)
    unreferenced: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong_size or self.wrong_digest)

    def summary(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "instances": self.instances,
            "objects": self.objects,
            "missing": len(self.missing),
            "wrong_size": len(self.wrong_size),
            "wrong_digest": len(self.wrong_digest),
            "unreferenced": self.unreferenced,
            "examples": (self.missing + self.wrong_size + self.wrong_digest)[:SHOWN],
        }


async def verify(db: AsyncDatabase, blobs: BlobStore, digests: bool = False) -> Verification:
    """Every indexed instance against its object: there, of the indexed size (and digest)."""
    result = Verification()
    referenced = set()
    cursor = InstanceIndex(db).instances.find({}, {"path": 1, "size": 1, "sha256": 1})
    async for doc in cursor:
        result.instances += 1
        key = doc["path"]
        referenced.add(key)
        try:
            size = await blobs.size(key)
        except BlobMissing:
            result.missing.append(key)
            continue
        if doc.get("size") is not None and size != doc["size"]:
            result.wrong_size.append(key)
        elif digests and doc.get("sha256") and await blobs.digest(key) != doc["sha256"]:
            result.wrong_digest.append(key)
    async for key in blobs.keys():
        result.objects += 1
        result.unreferenced += key not in referenced
    return result


async def copy_directory(source: Path, blobs: BlobStore) -> tuple[int, int]:
    """Copy every object of a blob directory into `blobs` under the same key; returns
    (copied, already there). Keys are kept, so the instance index needs no change."""
    directory = DirectoryBlobStore(source)
    there = {key async for key in blobs.keys()}
    copied = skipped = 0
    async for key in directory.keys():
        if key in there:
            skipped += 1
            continue
        await blobs.import_file(directory.absolute(key), key)
        copied += 1
    return copied, skipped
