"""The access model's cache: bounded, current, and never keeping what a revocation overtook
(no infrastructure: the read model in memory, as the worker's fold writes it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from studyshare.contracts.events.share import AccessRevoked
from studyshare.contracts.tokens import AccessClaims
from studyshare.study_store.adapters.access_cache import AccessCache
from studyshare.study_store.adapters.access_documents import InMemoryAccessDocuments
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.adapters.read_models import Doc

from .conftest import Events, study_received, study_shared

DOCTOR = AccessClaims(sub="usr_doc", roles=("physician",), iat=0, exp=2**31)


def archive(studies: int) -> tuple[InMemoryAccessDocuments, Events]:
    """`studies` studies, each shared with the doctor in a bucket of its own."""
    documents, ev = InMemoryAccessDocuments(), Events()
    for n in range(studies):
        uid = f"1.2.840.99.{n}"
        documents.apply([ev(study_received(uid), uid)])
        documents.apply([ev(study_shared(f"bkt_{n}", [uid], [("usr_doc", "user")]), f"bkt_{n}")])
    return documents, ev


def revocation(ev: Events, bucket_id: str):
    return ev(
        AccessRevoked(bucket_id=bucket_id, scope="bucket", revoked_by="usr_sender"), bucket_id
    )


async def model_over(documents: InMemoryAccessDocuments, **kw) -> AccessModel:
    model = AccessModel(documents, **kw)
    await model.load()
    model.lease.renew(time.monotonic())
    return model


async def test_memory_is_bounded_whatever_the_archive_holds():
    documents, _ = archive(400)
    model = await model_over(documents, cache_docs=100, cache_lookups=100)
    for n in range(400):
        assert (await model.decide(DOCTOR, f"1.2.840.99.{n}")).images
        stats = model.cache.stats()
        assert stats["cached_docs"] <= 100 and stats["cached_lookups"] <= 100, stats
    assert len(documents.docs) == 800, "the archive is four times what the process holds"


async def test_a_cached_grant_is_refused_once_the_follower_read_its_revocation():
    documents, ev = archive(3)
    model = await model_over(documents)
    uid = "1.2.840.99.1"
    assert (await model.decide(DOCTOR, uid)).images  # now cached
    documents.apply([revocation(ev, "bkt_1")])
    assert (await model.decide(DOCTOR, uid)).images, "not read yet: the cached copy decides"
    await model.refresh()
    assert (await model.decide(DOCTOR, uid)).refusal == "revoked"


class Gated:
    """A source whose reads return what was stored when they began, once `release` is set."""

    def __init__(self, documents: InMemoryAccessDocuments) -> None:
        self.documents = documents
        self.release = asyncio.Event()
        self.reads = 0

    def __getattr__(self, name: str):
        return getattr(self.documents, name)

    async def by_ids(self, ids: Sequence[str]) -> list[Doc]:
        self.reads += 1
        before = await self.documents.by_ids(ids)
        await self.release.wait()
        return before


async def test_a_read_overtaken_by_a_revocation_is_neither_kept_nor_joined():
    documents, ev = archive(1)
    source = Gated(documents)
    cache = AccessCache(source)  # type: ignore[arg-type]
    first = asyncio.create_task(cache.doc("bucket:bkt_0"))
    await asyncio.sleep(0)
    assert source.reads == 1
    documents.apply([revocation(ev, "bkt_0")])
    cache.changed(await documents.changed_since(documents.seq - 1))  # the follower reads it
    later = asyncio.create_task(cache.doc("bucket:bkt_0"))
    await asyncio.sleep(0)
    assert source.reads == 2, "a request after the follower moved starts its own read"
    source.release.set()
    old, new = await first, await later
    assert not old["revoked"], "the read begun before the revocation answers its own request"
    assert new["revoked"]
    assert cache.peek("bucket:bkt_0")["revoked"], "and the older copy is not what is kept"


async def test_a_bucket_shared_after_its_study_was_looked_up_joins_the_lookup():
    documents, ev = archive(1)
    model = await model_over(documents)
    uid = "1.2.840.99.0"
    other = AccessClaims(sub="usr_other", roles=("physician",), iat=0, exp=2**31)
    assert not (await model.decide(other, uid)).images  # the study's buckets now cached
    documents.apply([ev(study_shared("bkt_new", [uid], [("usr_other", "user")]), "bkt_new")])
    await model.refresh()
    assert (await model.decide(other, uid)).bucket_id == "bkt_new"


async def test_start_up_reads_no_document():
    documents, _ = archive(50)
    source = Gated(documents)
    source.release.set()
    model = AccessModel(source)  # type: ignore[arg-type]
    await model.load()
    assert source.reads == 0 and model.last_seq == documents.seq
    assert model.cache.stats()["cached_docs"] == 0
