"""MongoDB adapters: reading the study log (live generation) and the audit's own read records."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from studyshare.audit.adapters.projections import (
    ENTRIES,
    HEADS,
    REFERENCES,
    STUDIES,
    AuditLogProjection,
    ensure_indexes,
)
from studyshare.audit.domain.alerts import BURST_EVENT_TYPES, bursts, single_event_alerts
from studyshare.audit.domain.chain import GENESIS, LEDGER_HEAD, ChainVerifier, Ledger, seal
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.mongo import find_in
from studyshare.plumbing.projection import GenerationPointer, collection_name
from studyshare.plumbing.unit_of_work import MongoUnitOfWork, Session

log = get_logger(__name__)

READS = "audit_reads"
READS_HEAD = "audit_reads_head"
READ_STREAM = "audit_log_used"
IDENTITY_TYPES = (
    "GroupCreated",
    "GroupMemberAdded",
    "GroupMemberRemoved",
    "GroupMembershipLapsed",
    "GroupMembershipConfirmed",
    "UserRegistered",
    "UserRolesChanged",
    "UserDeactivated",
    "DepartmentAdminAssigned",
)

NAMING_TYPES = ("UserRegistered", "UserProfileChanged", "UserRolesChanged")


@dataclass(frozen=True)
class LogFilter:
    """Filters of the study logging; every one optional."""

    study_uids: Sequence[str] | None = None
    actor: str | None = None
    patient_id: str | None = None
    event_types: Sequence[str] = ()
    categories: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None


class AuditStore:
    """Queries of the live generation of the `audit_log` projection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.pointer = GenerationPointer(db, AuditLogProjection.name)
        self._indexed: set[int] = set()
        self._reads_indexed = False

    async def _c(self, name: str):
        """A collection of the live generation, whose indexes exist before it is read."""
        generation = await self.pointer.current()
        if generation not in self._indexed:
            try:
                await ensure_indexes(self.db, generation)
            except PyMongoError as exc:  # e.g. a tampered log with duplicate seqs: still read
                log.warning("audit.indexes_failed", generation=generation, error=str(exc))
            self._indexed.add(generation)
        return self.db[collection_name(AuditLogProjection.name, generation, name)]

    # -- lookups ---------------------------------------------------------------------------
    async def study(self, uid: str) -> dict[str, Any] | None:
        return await (await self._c(STUDIES)).find_one({"_id": uid})

    async def patients_of(self, uids: Iterable[str]) -> dict[str, str | None]:
        studies = await self._c(STUDIES)
        return {
            d["_id"]: d.get("patient_id")
            async for d in studies.find({"_id": {"$in": sorted(set(uids))}})
        }

    async def studies_of_patient(self, patient_id: str) -> list[str]:
        studies = await self._c(STUDIES)
        return [d["_id"] async for d in studies.find({"patient_id": patient_id}, {"_id": 1})]

    async def studies_of_departments(self, departments: Iterable[str]) -> list[str]:
        studies = await self._c(STUDIES)
        return [
            d["_id"]
            async for d in studies.find({"department_id": {"$in": sorted(set(departments))}})
        ]

    # -- study logging ---------------------------------------------------------------------
    async def _study_clause(self, uids: Sequence[str]) -> dict[str, Any]:
        """Entries that name one of the studies, or one of their reference numbers (by id)."""
        refs = [d["_id"] async for d in find_in(await self._c(REFERENCES), "study_uid", uids)]
        if not refs:
            return {"study_uids": {"$in": list(uids)}}
        return await self._any_of((("study_uids", uids), ("reference_ids", refs)))

    async def _patient_clause(self, patient_id: str) -> dict[str, Any]:
        """Entries about the patient's studies, or naming the patient."""
        studies = await self.studies_of_patient(patient_id)
        return await self._any_of((("study_uids", studies), ("patient_id", [patient_id])))

    async def _any_of(self, lookups: Iterable[tuple[str, Sequence[Any]]]) -> dict[str, Any]:
        """Entries whose field holds one of its values, for any of the (field, values)
        `lookups`: by the ids each reads along its index (an `$or` is a collection scan on the
        local database, and on MongoDB unless every branch is indexed)."""
        entries = await self._c(ENTRIES)
        ids = {
            d["_id"]
            for field, values in lookups
            async for d in find_in(entries, field, values, {"_id": 1})
        }
        return {"_id": {"$in": sorted(ids)}}

    async def query(self, f: LogFilter) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = []
        if f.study_uids is not None:
            clauses.append(await self._study_clause(f.study_uids))
        if f.patient_id:
            clauses.append(await self._patient_clause(f.patient_id))
        if f.actor:
            clauses.append({"actors": f.actor})
        if f.event_types:
            clauses.append({"event_type": {"$in": list(f.event_types)}})
        if f.categories:
            clauses.append({"category": {"$in": list(f.categories)}})
        span: dict[str, Any] = {}
        if f.since:
            span["$gte"] = f.since
        if f.until:
            span["$lte"] = f.until
        if span:
            clauses.append({"occurred_at": span})
        if not clauses:
            return {}
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    async def page(self, f: LogFilter, offset: int, limit: int) -> tuple[list[dict], int]:
        entries = await self._c(ENTRIES)
        query = await self.query(f)
        total = await entries.count_documents(query)
        cursor = (
            entries.find(query)
            .sort([("occurred_at", ASCENDING), ("seq", ASCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [d async for d in cursor], total

    async def study_entries(self, uid: str) -> list[dict[str, Any]]:
        entries = await self._c(ENTRIES)
        return [d async for d in entries.find(await self._study_clause([uid]))]

    async def directory_entries(
        self, group_ids: Iterable[str], department_ids: Iterable[str]
    ) -> list[dict[str, Any]]:
        """Identity entries needed to expand groups and departments into their members."""
        entries = await self._c(ENTRIES)
        groups, departments = sorted(set(group_ids)), sorted(set(department_ids))
        found = [
            d async for d in find_in(entries, "stream", groups, extra={"aggregate_type": "Group"})
        ]
        naming = [d async for d in find_in(entries, "departments", departments)]
        users = {d["payload"].get("user_id") for d in naming} - {None}
        found += [d for d in naming if d["aggregate_type"] != "User"]  # admin assignments
        found += [
            d
            async for d in find_in(
                entries,
                "stream",
                users,
                extra={"aggregate_type": "User", "event_type": {"$in": list(IDENTITY_TYPES)}},
            )
        ]
        return found

    async def groups_of_people(self, user_ids: Iterable[str]) -> set[str]:
        """The groups these users were ever made members of (group ids are `grp_...` streams:
        the stream index's prefix range, not a scan of the log)."""
        entries = await self._c(ENTRIES)
        events = ("GroupCreated", "GroupMemberAdded")
        extra = {"stream": {"$regex": "^grp_"}, "event_type": {"$in": list(events)}}
        return {
            d["stream"]
            async for d in find_in(entries, "subjects", set(user_ids), {"stream": 1}, extra=extra)
        }

    async def people_entries(self, user_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The identity entries that say these users' roles, departments and deactivation."""
        entries = await self._c(ENTRIES)
        extra = {"aggregate_type": "User", "event_type": {"$in": list(IDENTITY_TYPES)}}
        return [d async for d in find_in(entries, "stream", set(user_ids), extra=extra)]

    async def department_policies(self, department_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The departments' creation (institution, country) and their policies."""
        entries = await self._c(ENTRIES)
        extra = {"event_type": {"$in": ["DepartmentCreated", "DepartmentPolicySet"]}}
        return [d async for d in find_in(entries, "stream", set(department_ids), extra=extra)]

    async def naming_entries(
        self, user_ids: Iterable[str], group_ids: Iterable[str]
    ) -> list[dict[str, Any]]:
        """Identity entries that name these users (and say their departments) and groups."""
        entries = await self._c(ENTRIES)
        found = [
            d
            async for d in find_in(
                entries,
                "stream",
                set(user_ids),
                extra={"aggregate_type": "User", "event_type": {"$in": list(NAMING_TYPES)}},
            )
        ]
        found += [
            d
            async for d in find_in(
                entries, "stream", set(group_ids), extra={"event_type": "GroupCreated"}
            )
        ]
        return found

    async def department_entries(self, department_ids: Iterable[str]) -> list[dict[str, Any]]:
        entries = await self._c(ENTRIES)
        return [
            d
            async for d in find_in(
                entries, "stream", set(department_ids), extra={"event_type": "DepartmentCreated"}
            )
        ]

    # -- alerts ----------------------------------------------------------------------------
    async def alerts(
        self,
        since: datetime,
        until: datetime,
        threshold: int,
        window: timedelta,
        study_uids: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        entries = await self._c(ENTRIES)
        span = {"occurred_at": {"$gte": since - window, "$lte": until}}
        scope = {"study_uids": {"$in": list(study_uids)}} if study_uids is not None else {}
        single = [d async for d in entries.find({**span, **scope, "alert": {"$ne": None}})]
        failures = [
            d
            async for d in entries.find(
                {**span, **scope, "event_type": {"$in": list(BURST_EVENT_TYPES)}}
            )
        ]
        found = single_event_alerts(single) + bursts(failures, threshold, window)
        found = [a for a in found if a["until"] >= since]
        return sorted(found, key=lambda a: (a["at"], a["kind"]))

    # -- tamper evidence -------------------------------------------------------------------
    async def verify(self) -> dict[str, Any]:
        """Walk both chains (study log of the live generation, audit read records)."""
        result = {}
        for label, entries, head in (
            ("study_log", await self._c(ENTRIES), await self._c(HEADS)),
            ("audit_reads", self.db[READS], self.db[READS_HEAD]),
        ):
            verifier = ChainVerifier()
            async for doc in entries.find({}).sort("seq", ASCENDING):
                verifier.check(doc)
            recorded = await head.find_one({"_id": LEDGER_HEAD})
            verifier.finish(recorded)
            verifier.head = recorded
            result[label] = verifier
        return result

    # -- audit log used (110101) -----------------------------------------------------------
    async def ensure_indexes(self) -> None:
        await self.db[READS].create_index([("seq", ASCENDING)], unique=True)
        await self.db[READS].create_index([("study_uids", ASCENDING), ("seq", DESCENDING)])

    async def record_read(
        self,
        *,
        actor_id: str,
        roles: Sequence[str],
        route: str,
        query: dict[str, Any],
        study_uid: str | None,
        ip: str | None = None,
        attempts: int = 20,
    ) -> dict[str, Any]:
        """Append one `audit_log_used` entry to the audit's own chain (before answering).

        The API may run several replicas: the head is read and moved in one transaction and
        `seq` is unique, so a concurrent reader loses and retries instead of forking the chain.
        """
        if not self._reads_indexed:
            await self.ensure_indexes()
            self._reads_indexed = True
        reads, heads = self.db[READS], self.db[READS_HEAD]

        async def record(session: Session) -> dict[str, Any]:
            entry_id = str(uuid.uuid4())
            now = datetime.now(UTC)
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            head = await heads.find_one({"_id": LEDGER_HEAD}, session=session)
            ledger = Ledger(head["seq"], head["chain_hash"]) if head else Ledger()
            entry = {
                "_id": entry_id,
                "kind": "audit_log_used",
                "event_id": entry_id,
                "event_type": "AuditLogUsed",
                "occurred_at": now,
                "actor": {"kind": "user", "id": actor_id, **({"ip": ip} if ip else {})},
                "actors": [actor_id],
                "category": "audit_log_used",
                "outcome": "success",
                "summary": f"{actor_id} read {route}",
                "payload": {"route": route, "query": query, "roles": list(roles)},
                "study_uids": [study_uid] if study_uid else [],
                "stream": READ_STREAM,
                "aggregate_version": ledger.seq + 1,
            }
            seal(entry, head["hash"] if head else GENESIS)
            ledger.record(entry)
            await reads.insert_one(entry, session=session)
            await heads.update_one(
                {"_id": LEDGER_HEAD},
                {
                    "$set": {
                        "seq": ledger.seq,
                        "chain_hash": ledger.chain_hash,
                        "hash": entry["hash"],
                    }
                },
                upsert=True,
                session=session,
            )
            return entry

        try:
            return await MongoUnitOfWork(self.db.client).run(
                record, retries=attempts, retry_if=lambda e: isinstance(e, PyMongoError)
            )
        except PyMongoError as exc:
            raise RuntimeError("could not record the audit log read") from exc

    async def reads(self, study_uid: str | None, limit: int, offset: int = 0):
        query = {"study_uids": study_uid} if study_uid else {}
        total = await self.db[READS].count_documents(query)
        cursor = self.db[READS].find(query).sort("seq", ASCENDING).skip(offset).limit(limit)
        return [d async for d in cursor], total
