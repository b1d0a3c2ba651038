"""Remapped UIDs back to the real ones.

A recipient of an anonymized share only ever sees UIDs remapped for its bucket
(`domain.anonymize.remap_uid`), and asks for studies, series and instances by them. The
`RemappedUids` index finds the real study (and the bucket) of a remapped study UID among the
studies of anonymized buckets, and the real series or instance within that study. It learns
each (bucket, study) once; a lookup of a real UID costs one dictionary look-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from studyshare.contracts.anonymized import bucket_key, remap_uid

#: (bucket id, study UIDs) of every anonymized bucket
AnonymizedBuckets = Callable[[], Iterable[tuple[str, Iterable[str]]]]
#: the instance documents of a study (`_id`, `series_uid`)
InstancesOf = Callable[[str], Awaitable[list[dict[str, Any]]]]


class RemappedUids:
    def __init__(self, secret: str, buckets: AnonymizedBuckets, instances_of: InstancesOf):
        self.secret = secret
        self.buckets = buckets
        self.instances_of = instances_of
        self._studies: dict[str, tuple[str, str]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._keys: dict[str, bytes] = {}

    def key(self, bucket_id: str) -> bytes:
        key = self._keys.get(bucket_id)
        if key is None:
            key = self._keys[bucket_id] = bucket_key(self.secret, bucket_id)
        return key

    def study(self, remapped: str) -> tuple[str, str] | None:
        """(real study UID, bucket id) of a remapped study UID, else None."""
        found = self._studies.get(remapped)
        if found is not None:
            return found
        for bucket_id, study_uids in self.buckets():
            for uid in study_uids:
                if (bucket_id, uid) in self._seen:
                    continue
                self._seen.add((bucket_id, uid))
                self._studies[remap_uid(self.key(bucket_id), uid)] = (uid, bucket_id)
        return self._studies.get(remapped)

    async def within(self, study_uid: str, bucket_id: str, uids: list[str]) -> list[str]:
        """The real series / instance UIDs of `uids` (remapped for `bucket_id`) in the study;
        a UID that is no remapped one stays as it is."""
        key = self.key(bucket_id)
        real: dict[str, str] = {}
        for doc in await self.instances_of(study_uid):
            for uid in (doc.get("series_uid"), doc.get("_id")):
                if uid:
                    real.setdefault(remap_uid(key, uid), uid)
        return [real.get(u, u) for u in uids]


def anonymized_buckets(
    buckets: Mapping[str, Any], bucket_docs: Mapping[str, dict[str, Any]]
) -> Iterable[tuple[str, Iterable[str]]]:
    """From the access model's buckets: those that anonymize, with their studies."""
    for bucket_id, bucket in list(buckets.items()):
        if getattr(bucket, "anonymize", False):
            yield bucket_id, tuple((bucket_docs.get(bucket_id) or {}).get("study_uids", ()))
