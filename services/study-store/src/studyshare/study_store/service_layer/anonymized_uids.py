"""Remapped UIDs back to the real ones.

A recipient of an anonymized share only ever sees UIDs remapped for its bucket
(`domain.anonymize.remap_uid`), and asks for studies, series and instances by them. The
`RemappedUids` index finds the real study (and the bucket) of a remapped study UID through the
access read model (an anonymized bucket's document lists the UIDs it shows, indexed), keeping
the latest `max_studies` found, and the real series or instance within that study.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from studyshare.contracts.anonymized import bucket_key, remap_uid

#: (real study UID, bucket id) of a remapped study UID, else None
FindStudy = Callable[[str], Awaitable[tuple[str, str] | None]]
#: the instance documents of a study (`_id`, `series_uid`)
InstancesOf = Callable[[str], Awaitable[list[dict[str, Any]]]]


class RemappedUids:
    def __init__(
        self,
        secret: str,
        find_study: FindStudy,
        instances_of: InstancesOf,
        max_studies: int = 10_000,
    ) -> None:
        self.secret = secret
        self.find_study = find_study
        self.instances_of = instances_of
        self.max_studies = max_studies
        self._studies: OrderedDict[str, tuple[str, str]] = OrderedDict()

    async def study(self, remapped: str) -> tuple[str, str] | None:
        """(real study UID, bucket id) of a remapped study UID, else None."""
        found = self._studies.get(remapped)
        if found is not None:
            self._studies.move_to_end(remapped)
            return found
        found = await self.find_study(remapped)
        if found is not None:  # a mapping never changes: whether it still opens is decided
            self._studies[remapped] = found
            while len(self._studies) > self.max_studies:
                self._studies.popitem(last=False)
        return found

    async def within(self, study_uid: str, bucket_id: str, uids: list[str]) -> list[str]:
        """The real series / instance UIDs of `uids` (remapped for `bucket_id`) in the study;
        a UID that is no remapped one stays as it is."""
        key = bucket_key(self.secret, bucket_id)
        real: dict[str, str] = {}
        for doc in await self.instances_of(study_uid):
            for uid in (doc.get("series_uid"), doc.get("_id")):
                if uid:
                    real.setdefault(remap_uid(key, uid), uid)
        return [real.get(u, u) for u in uids]
