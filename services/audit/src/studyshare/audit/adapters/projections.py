"""The audit worker's projection: every event of every topic into the hash-chained study log.

One projection, `audit_log`, is the single chain writer (one faust agent, concurrency 1). Each
batch is applied in one transaction with the runner's checkpoints, in a handful of round
trips whatever its size: one read of the previous stream entries, one of the bucket map and
the ledger head, one `insert_many` of the entries, and a few `bulk_write`s of side tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.audit.domain.chain import GENESIS, LEDGER_HEAD, Ledger, seal
from studyshare.audit.domain.entries import build_entry
from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.topics import TOPICS
from studyshare.plumbing.mongo import find_in
from studyshare.plumbing.projection import (
    GenerationPointer,
    Projection,
    ProjectionContext,
    collection_name,
)

RECENT_STREAMS = 300_000  # stream heads remembered per generation (a few dozen MB at most)
ENTRIES = "entries"
HEADS = "heads"
BUCKETS = "buckets"
STUDIES = "studies"
REFERENCES = "references"
LEDGER_FIELDS = frozenset({"seq", "chain_hash", "prev_chain_hash", "recorded_at"})


async def ensure_indexes(db: AsyncDatabase, generation: int) -> None:
    """Create (idempotently) the indexes the audit queries need in one generation."""

    def c(name: str) -> AsyncCollection:
        return db[collection_name(AuditLogProjection.name, generation, name)]

    entries = c(ENTRIES)
    await entries.create_index([("seq", ASCENDING)], unique=True)
    await entries.create_index([("study_uids", ASCENDING), ("occurred_at", ASCENDING)])
    await entries.create_index([("actors", ASCENDING), ("occurred_at", ASCENDING)])
    await entries.create_index([("reference_ids", ASCENDING)], sparse=True)
    await entries.create_index([("departments", ASCENDING)], sparse=True)
    await entries.create_index([("patient_id", ASCENDING)])
    await entries.create_index([("stream", ASCENDING), ("aggregate_version", DESCENDING)])
    await entries.create_index([("occurred_at", ASCENDING)])
    await c(STUDIES).create_index([("department_id", ASCENDING)])
    await c(STUDIES).create_index([("patient_id", ASCENDING)])
    await c(REFERENCES).create_index([("study_uid", ASCENDING)])


def entry_key(stream: str, version: int) -> str:
    return f"{stream}:{version}"


class AuditLogProjection(Projection):
    """Study logging for every topic: one chained entry per event, plus lookup tables.

    - `entries`: the log (see `domain.entries`, `domain.chain`)
    - `heads`: the ledger head (`__ledger__`: last seq and chain hash)
    - `buckets`: bucket -> its studies (bucket events carry no study uid)
    - `studies`: study -> department, owner, patient id (access checks, patient filter)
    - `references`: reference id -> study (a patient's failed login may not name the study)
    """

    name: ClassVar[str] = "audit_log"
    topics: ClassVar[tuple[str, ...]] = tuple(t.name for t in TOPICS)
    collections: ClassVar[tuple[str, ...]] = (ENTRIES, HEADS, BUCKETS, STUDIES, REFERENCES)

    def __init__(self) -> None:
        self._recent: dict[int, dict[str, tuple[int, str]]] = {}

    async def setup(self, ctx: ProjectionContext) -> None:
        """Indexes of the live generation. A generation being rebuilt beside the live one is
        bulk-loaded without secondary indexes; they are built once it is complete (see
        `ensure_indexes`), which is much cheaper than maintaining them entry by entry."""
        if await GenerationPointer(ctx.db, self.name, cache_s=0).current() == ctx.generation:
            await ensure_indexes(ctx.db, ctx.generation)

    async def prepare_live(self, ctx: ProjectionContext) -> None:
        """All indexes, built once the generation is loaded (see `setup`)."""
        await ensure_indexes(ctx.db, ctx.generation)

    def comparable(self, collection: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """Entries and stream links must be rebuilt exactly; the ledger order (`seq`,
        `chain_hash`) and recording times follow delivery order, so they may differ."""
        if collection in (ENTRIES, HEADS):
            return {k: v for k, v in doc.items() if k not in LEDGER_FIELDS}
        return doc

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        session = ctx.session
        entries = ctx.collection(ENTRIES)
        heads = ctx.collection(HEADS)
        buckets_c = ctx.collection(BUCKETS)

        previous = await self._previous_links(events, ctx)
        recent = self._recent.setdefault(ctx.generation, {})
        if len(recent) > RECENT_STREAMS:
            recent.clear()
        wanted_buckets = {
            str(e.payload.get("bucket_id") or e.aggregate_id)
            for e in events
            if e.aggregate_type == "Bucket" and e.event_type != "StudyShared"
        }
        buckets: dict[str, dict[str, Any]] = {
            d["_id"]: d async for d in find_in(buckets_c, "_id", wanted_buckets, session=session)
        }
        head = await heads.find_one({"_id": LEDGER_HEAD}, session=session)
        ledger = Ledger(head["seq"], head["chain_hash"]) if head else Ledger()
        recorded_at = datetime.now(UTC)

        docs: list[dict[str, Any]] = []
        changed_buckets: set[str] = set()
        side: dict[str, list[UpdateOne]] = {STUDIES: [], REFERENCES: []}
        for envelope in events:
            p = envelope.payload
            bucket_id = str(p.get("bucket_id") or envelope.aggregate_id)
            if envelope.event_type == "StudyShared":
                buckets[bucket_id] = {
                    "_id": bucket_id,
                    "study_uids": list(p.get("study_uids") or []),
                    "removed": [],
                }
                changed_buckets.add(bucket_id)
            bucket = buckets.get(bucket_id) if envelope.aggregate_type == "Bucket" else None
            current = (
                [u for u in bucket["study_uids"] if u not in bucket["removed"]] if bucket else []
            )
            entry = build_entry(envelope, current)
            if bucket is not None and envelope.event_type == "AccessRevoked":
                # the Access tab's "remove study from bucket" (issue 16, point 10)
                uid = p.get("study_uid")
                if uid and p.get("scope") == "study" and uid not in bucket["removed"]:
                    bucket["removed"].append(uid)
                    changed_buckets.add(bucket_id)
            stream = entry["stream"]
            seal(entry, previous.get(stream, GENESIS))
            previous[stream] = entry["hash"]
            recent[stream] = (envelope.aggregate_version, entry["hash"])
            ledger.record(entry)
            entry["recorded_at"] = recorded_at
            docs.append(entry)
            self._side_tables(envelope, entry["payload"], side)

        await entries.insert_many(docs, ordered=True, session=session)
        await heads.update_one(
            {"_id": LEDGER_HEAD},
            {"$set": {"seq": ledger.seq, "chain_hash": ledger.chain_hash}},
            upsert=True,
            session=session,
        )
        if changed_buckets:
            await buckets_c.bulk_write(
                [
                    UpdateOne(
                        {"_id": b},
                        {
                            "$set": {
                                "study_uids": buckets[b]["study_uids"],
                                "removed": buckets[b]["removed"],
                            }
                        },
                        upsert=True,
                    )
                    for b in sorted(changed_buckets)
                ],
                ordered=True,
                session=session,
            )
        for name, ops in side.items():
            if ops:
                await ctx.collection(name).bulk_write(ops, ordered=True, session=session)

    async def _previous_links(
        self, events: Sequence[EventEnvelope], ctx: ProjectionContext
    ) -> dict[str, str]:
        """The hash of the entry before each stream's first event in this batch.

        Usually known from the last batches (`_recent`: version and hash of each stream's last
        entry written by this process). That memory is trusted only when it holds exactly
        version - 1, so a batch that was rolled back and retried, or a stream another
        process wrote meanwhile, falls back to the database: an `_id` lookup of version - 1,
        then (after a version gap) the stream's latest entry.
        """
        recent = self._recent.get(ctx.generation, {})
        first: dict[str, int] = {}
        for e in events:
            first.setdefault(e.aggregate_id, e.aggregate_version)
        found: dict[str, str] = {}
        wanted: dict[str, str] = {}
        for stream, version in first.items():
            if version <= 1:
                continue
            known = recent.get(stream)
            if known is not None and known[0] == version - 1:
                found[stream] = known[1]
            else:
                wanted[entry_key(stream, version - 1)] = stream
        if not wanted:
            return found
        entries = ctx.collection(ENTRIES)
        async for d in find_in(
            entries, "_id", wanted, {"stream": 1, "hash": 1}, session=ctx.session
        ):
            found[d["stream"]] = d["hash"]
        for stream in set(wanted.values()) - set(found):
            latest = await entries.find_one(
                {"stream": stream, "aggregate_version": {"$lt": first[stream]}},
                {"hash": 1},
                sort=[("aggregate_version", DESCENDING)],
                session=ctx.session,
            )
            if latest is not None:
                found[stream] = latest["hash"]
        return found

    @staticmethod
    def _side_tables(
        envelope: EventEnvelope, p: dict[str, Any], side: dict[str, list[UpdateOne]]
    ) -> None:
        """`p`: the entry's payload (upcast: an old event names its reference id too)."""
        if envelope.event_type == "StudyReceived" and isinstance(p.get("study_uid"), str):
            side[STUDIES].append(
                UpdateOne(
                    {"_id": p["study_uid"]},
                    {
                        "$set": {
                            "department_id": p.get("department_id"),
                            "owner_id": p.get("owner_id"),
                            "patient_id": p.get("patient_id"),
                        }
                    },
                    upsert=True,
                )
            )
        elif envelope.event_type == "ReferenceNumberIssued" and isinstance(
            p.get("reference_id"), str
        ):
            side[REFERENCES].append(
                UpdateOne(
                    {"_id": p["reference_id"]},
                    {"$set": {"study_uid": p.get("study_uid")}},
                    upsert=True,
                )
            )


def projections(settings: object = None) -> list[Projection]:
    return [AuditLogProjection()]
