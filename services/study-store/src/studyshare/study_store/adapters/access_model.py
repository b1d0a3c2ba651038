"""The in-memory access model of an API process: decisions with no database round trip.

At start-up it loads the live generation of the `access_decisions` read model (built by the
worker from share, identity and study events) and then follows it: every
`refresh_interval_s` (default 0.1 s) one indexed query fetches the documents whose `seq` is
above the last one seen. A replay (new generation) is noticed within a second and reloads
everything.

It is a follower (`studyshare.plumbing.followers`): it records in the study store's
`access_followers` how far it has read (one upsert when that moved, else every quarter lease,
from a loop of its own) and decides only while its lease holds, i.e. the read its last stored
beat reported started less than `lease_s` ago; after that every decision is refused (503
`AccessDecisionsUnavailable`). A
revocation or lock is handed to the study store by the share service (`access_barrier`),
which answers once every follower has read it: the recipient's next request is refused.

Events of this service that change access (break-the-glass, reference numbers, read messages)
are also folded in memory at once by the request that appends them (`apply_local`), so the
caller's next request already sees them; the worker's copy replaces them later.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.access_policy.decision import AccessDecision, ReportAccess
from studyshare.access_policy.glass import GlassFacts, why_not_break_the_glass
from studyshare.access_policy.rules import (
    GLASS_STOPPERS,
    STUDY_ROLES,
    AccessFacts,
    Bucket,
    Recipient,
    ReferenceFacts,
    StudyFacts,
    Subject,
    decide,
    evaluate_grant,
)
from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.followers import JOINING, FollowerRegistry, Lease
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.projection import GenerationPointer, collection_name
from studyshare.study_store.adapters.read_models import ACCESS_PROJECTION, Doc, doc_id_for, fold
from studyshare.study_store.domain.viewer import ViewerClaims, narrowed

log = get_logger(__name__)
LOCAL_OVERLAY_S = 300.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def bucket_from_doc(doc: Doc) -> Bucket:
    return Bucket(
        bucket_id=doc.get("bucket_id") or doc["_id"].split(":", 1)[1],
        study_uids=frozenset(doc.get("study_uids", ())),
        recipients=tuple(
            Recipient(
                r["recipient_id"],
                r["kind"],
                (doc.get("accepted") or {}).get(r["recipient_id"]),
            )
            for r in doc.get("recipients", ())
        ),
        access_level=doc.get("access_level", "images"),
        sender_id=doc.get("sender_id") or "",
        valid_until=_aware(doc.get("valid_until")),
        unlimited=bool(doc.get("unlimited")),
        anonymize=bool(doc.get("anonymize")),
        allow_download=bool(doc.get("allow_download")),
        two_factor=bool(doc.get("two_factor")),
        locked=bool(doc.get("locked")),
        revoked=bool(doc.get("revoked")),
        expired=bool(doc.get("expired")),
        removed_study_uids=frozenset(doc.get("removed_study_uids", ())),
        revoked_recipient_ids=frozenset(doc.get("revoked_recipient_ids", ())),
        parent_bucket_id=doc.get("parent_bucket_id"),
    )


class InMemoryAccessModel:
    """Implements `decide(principal, study_uid)` and `visible_studies(principal)` in memory."""

    def __init__(
        self,
        db: AsyncDatabase,
        *,
        refresh_interval_s: float = 0.1,
        patient_report_default: ReportAccess = "read",
        patient_download_default: bool = False,
        clock: Callable[[], datetime] = utcnow,
        lease_s: float = 10.0,
        registry: FollowerRegistry | None = None,
        follower_id: str = "access-model",
    ) -> None:
        self.db = db
        self.lease = Lease(lease_s)
        self.registry = registry
        self.follower_id = follower_id
        self.refresh_interval_s = refresh_interval_s
        self.patient_report_default = patient_report_default
        self.patient_download_default = patient_download_default
        self.clock = clock
        self.pointer = GenerationPointer(db, ACCESS_PROJECTION, cache_s=1.0)
        self.generation = -1
        self.last_seq = 0
        self.read_at: float | None = None
        self._beaten: tuple[int, int] | None = None
        self._moved = asyncio.Event()
        self._nudged = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._pending: list[tuple[float, EventEnvelope]] = []
        self._reset()

    def _reset(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.studies: dict[str, Doc] = {}
        self.buckets: dict[str, Bucket] = {}
        self.bucket_docs: dict[str, Doc] = {}
        self.buckets_by_study: dict[str, set[str]] = defaultdict(set)
        self.buckets_by_recipient: dict[str, set[str]] = defaultdict(set)
        self.studies_by_department: dict[str, set[str]] = defaultdict(set)
        self.studies_by_owner: dict[str, set[str]] = defaultdict(set)
        self.groups: dict[str, Doc] = {}
        self.groups_of_user: dict[str, set[str]] = defaultdict(set)
        self.users: dict[str, Doc] = {}
        self.departments: dict[str, Doc] = {}
        self.otp: dict[tuple[str, str, str | None], datetime] = {}
        self.break_glass: dict[tuple[str, str], datetime] = {}
        self.break_glass_by_user: dict[str, set[str]] = defaultdict(set)
        self.refs: dict[str, Doc] = {}
        self.refs_by_study: dict[str, set[str]] = defaultdict(set)
        self.reads: dict[tuple[str, str], datetime] = {}

    # -- following the read model -------------------------------------------------------

    def _docs_collection(self, generation: int):
        return self.db[collection_name(ACCESS_PROJECTION, generation, "docs")]

    async def load(self) -> None:
        """Load the live generation completely."""
        started = time.monotonic()
        generation = await self.pointer.current()
        self._reset()
        # The committed counter *before* the scan: a document rewritten while we scan has a
        # higher seq and is fetched again by the next refresh, never missed.
        meta = self.db[collection_name(ACCESS_PROJECTION, generation, "meta")]
        counter = await meta.find_one({"_id": "seq"})
        self.last_seq = counter["value"] if counter else 0
        async for doc in self._docs_collection(generation).find({}):
            self._put(doc)
        self.generation = generation
        self._reapply_pending()
        self._read(started)
        log.info("access_model.loaded", generation=generation, docs=len(self.docs))

    async def refresh(self) -> int:
        """Fetch what changed since the last refresh; return how many documents changed."""
        started = time.monotonic()
        if await self.pointer.current() != self.generation:
            await self.load()
            return len(self.docs)
        cursor = (
            self._docs_collection(self.generation)
            .find({"seq": {"$gt": self.last_seq}})
            .sort("seq", ASCENDING)
        )
        changed = 0
        async for doc in cursor:
            self._put(doc)
            self._reapply_pending(doc["_id"])
            self.last_seq = max(self.last_seq, doc.get("seq", 0))
            changed += 1
        self._read(started)
        return changed

    def _read(self, started: float) -> None:
        """A read that started at `started` succeeded: the beat loop reports it (at once when
        the position moved). Without a registry (tools, tests) the read renews the lease."""
        self.read_at = started
        if self.registry is None:
            self.lease.renew(started)
        elif (self.generation, self.last_seq) != self._beaten:
            self._moved.set()

    async def beat(self) -> None:
        """Record how far this model has read, and renew the lease from the start of that
        read (before the beat, so a barrier never takes it for later than it is)."""
        if self.registry is None or self.read_at is None:
            return
        position, read_at = (self.generation, self.last_seq), self.read_at
        await self.registry.beat(
            self.follower_id, position[1], generation=position[0], lease_s=self.lease.duration_s
        )
        self._beaten = position
        self.lease.renew(read_at)

    async def _beat_loop(self) -> None:
        """Beat when the position moved, else every quarter lease; apart from the refresh
        loop, so a slow write never delays the next read."""
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), self.lease.duration_s / 4)
            self._moved.clear()
            try:
                await self.beat()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.exception("access_model.beat_failed", failures=failures)
                await asyncio.sleep(self.refresh_interval_s)

    def nudge(self) -> None:
        """Refresh now rather than at the next interval (a barrier is waiting)."""
        self._nudged.set()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self.refresh()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.exception("access_model.refresh_failed", failures=failures)
            delay = self.refresh_interval_s * min(2**failures, 20)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), delay)
            self._nudged.clear()

    async def start(self) -> None:
        """Join the followers (before loading: see `plumbing.followers`), load, follow."""
        if self.registry is not None:
            await self.registry.beat(
                self.follower_id, JOINING, generation=-1, lease_s=self.lease.duration_s
            )
        await self.load()
        await self.beat()
        self._tasks = [
            asyncio.create_task(self.run(), name="access-model-follow"),
            asyncio.create_task(self._beat_loop(), name="access-model-beat"),
        ]

    async def stop(self) -> None:
        """Decide nothing more, stop following, and leave the followers."""
        self.lease.lapse()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.lease.lapse()  # a beat that completed while its task was being cancelled renewed it
        if self.registry is not None:
            with contextlib.suppress(Exception):
                await self.registry.leave(self.follower_id)

    def apply_local(self, envelopes: Iterable[EventEnvelope]) -> None:
        """Fold this process's own fresh events now, ahead of the worker."""
        now = time.monotonic()
        for envelope in envelopes:
            if doc_id_for(envelope) is None:
                continue
            self._pending.append((now, envelope))
            self._fold_in(envelope)

    def _fold_in(self, envelope: EventEnvelope) -> None:
        doc_id = doc_id_for(envelope)
        if doc_id is None:
            return
        scratch = {doc_id: copy.deepcopy(self.docs[doc_id])} if doc_id in self.docs else {}
        if fold(scratch, envelope) is not None:
            self._put(scratch[doc_id])

    def _reapply_pending(self, doc_id: str | None = None) -> None:
        horizon = time.monotonic() - LOCAL_OVERLAY_S
        self._pending = [(t, e) for t, e in self._pending if t >= horizon]
        for _, envelope in self._pending:
            if doc_id is None or doc_id_for(envelope) == doc_id:
                self._fold_in(envelope)

    # -- indexing ---------------------------------------------------------------------------

    def _put(self, doc: Doc) -> None:
        old = self.docs.get(doc["_id"])
        if old is not None:
            self._index(old, remove=True)
        self.docs[doc["_id"]] = doc
        self._index(doc, remove=False)

    def _index(self, doc: Doc, *, remove: bool) -> None:
        kind, _, key = doc["_id"].partition(":")

        def link(index: dict[str, set[str]], k: str | None, value: str) -> None:
            if not k:
                return
            if remove:
                index[k].discard(value)
                if not index[k]:
                    del index[k]
            else:
                index[k].add(value)

        if kind == "study":
            uid = key
            if remove:
                self.studies.pop(uid, None)
            else:
                self.studies[uid] = doc
            link(self.studies_by_department, doc.get("department_id"), uid)
            link(self.studies_by_owner, doc.get("owner_id"), uid)
        elif kind == "bucket":
            if remove:
                self.buckets.pop(key, None)
                self.bucket_docs.pop(key, None)
            else:
                self.buckets[key] = bucket_from_doc(doc)
                self.bucket_docs[key] = doc
            for uid in doc.get("study_uids", ()):
                link(self.buckets_by_study, uid, key)
            for r in doc.get("recipients", ()):
                link(self.buckets_by_recipient, r["recipient_id"], key)
            for user_id in (doc.get("accepted") or {}).values():
                link(self.buckets_by_recipient, user_id, key)
        elif kind == "group":
            if remove:
                self.groups.pop(key, None)
            else:
                self.groups[key] = doc
            lapsed = set(doc.get("lapsed_ids", ()))  # no access through the group till confirmed
            for member in doc.get("member_ids", ()):
                if member not in lapsed:
                    link(self.groups_of_user, member, key)
        elif kind == "user":
            if remove:
                self.users.pop(key, None)
            else:
                self.users[key] = doc
        elif kind == "department":
            if remove:
                self.departments.pop(key, None)
            else:
                self.departments[key] = doc
        elif kind == "otp":
            triple = (doc.get("bucket_id", ""), doc.get("recipient_id", ""), doc.get("session_id"))
            if remove:
                self.otp.pop(triple, None)
            elif doc.get("verified_until"):
                self.otp[triple] = _aware(doc["verified_until"])
        elif kind == "btg":
            pair = (doc.get("user_id", ""), doc.get("study_uid", ""))
            if remove:
                self.break_glass.pop(pair, None)
            elif doc.get("valid_until"):
                self.break_glass[pair] = _aware(doc["valid_until"])
            link(self.break_glass_by_user, pair[0], pair[1])
        elif kind == "ref":
            if remove:
                self.refs.pop(key, None)
            else:
                self.refs[key] = doc
            link(self.refs_by_study, doc.get("study_uid"), key)
        elif kind == "read":
            pair = (doc.get("user_id", ""), doc.get("study_uid", ""))
            if remove:
                self.reads.pop(pair, None)
            else:
                self.reads[pair] = _aware(doc.get("read_at")) or utcnow()

    # -- decisions --------------------------------------------------------------------------

    def subject(self, principal: AccessClaims) -> Subject:
        """The caller as the rules see them: token claims, narrowed by what identity said
        since the token was issued (a department left, an account deactivated)."""
        known = self.users.get(principal.sub)
        departments = frozenset(principal.department_ids)
        admin_of = frozenset(principal.admin_of)
        deactivated = False
        if known is not None:
            departments &= frozenset(known.get("department_ids", ()))
            admin_of &= frozenset(known.get("admin_of", ()))
            deactivated = bool(known.get("deactivated"))
        group_ids = frozenset(self.groups_of_user.get(principal.sub, ()))
        colleagues: dict[str, str] = {}
        for group_id in sorted(group_ids):
            group = self.groups[group_id]
            lapsed = set(group.get("lapsed_ids", ()))
            for member in group.get("member_ids", ()):
                if member != principal.sub and member not in lapsed:
                    colleagues.setdefault(member, group_id)
        return Subject(
            id=principal.sub,
            kind=principal.kind,
            roles=frozenset(principal.roles),
            department_ids=departments | admin_of,
            admin_of=admin_of,
            group_ids=group_ids,
            colleagues=colleagues,
            deactivated=deactivated,
            reference_number=principal.reference_number,
            token_study_uid=principal.study_uid,
            environment=principal.environment,
            session_id=principal.sid,
        )

    def holder(self, user_id: str) -> Subject:
        """A re-share's sender as identity knows them now (no token: the departments and groups
        they are in today), to tell whether they still hold the parent grant."""
        known = self.users.get(user_id, {})
        departments = (*known.get("department_ids", ()), *known.get("admin_of", ()))
        return Subject(
            id=user_id,
            department_ids=frozenset(departments),
            group_ids=frozenset(self.groups_of_user.get(user_id, ())),
        )

    def senders(self, buckets: Iterable[Bucket]) -> dict[str, Subject]:
        """The senders of the re-shares among `buckets` and up their parent chains."""
        found: dict[str, Subject] = {}
        for bucket in buckets:
            seen = 0
            while bucket.parent_bucket_id is not None and seen <= 16:
                if bucket.sender_id not in found:
                    found[bucket.sender_id] = self.holder(bucket.sender_id)
                parent = self.buckets.get(bucket.parent_bucket_id)
                if parent is None:
                    break
                bucket, seen = parent, seen + 1
        return found

    def facts(self, subject: Subject, study_uid: str) -> AccessFacts:
        doc = self.studies.get(study_uid)
        study = (
            StudyFacts(study_uid, doc.get("department_id"), doc.get("owner_id"))
            if doc is not None
            else None
        )
        reference = None
        if subject.reference_number and (ref := self.refs.get(subject.reference_number)):
            reference = ReferenceFacts(
                reference_number=ref.get("reference_number", subject.reference_number),
                study_uid=ref.get("study_uid", ""),
                valid_from=_aware(ref.get("valid_from")),
                valid_to=_aware(ref.get("valid_to")),
                complies_with_rule=self.reference_complies(ref),
                revoked=bool(ref.get("revoked")),
            )
        policy = self.departments.get(doc.get("department_id") or "", {}) if doc else {}
        patient_report = policy.get("patient_report_access") or self.patient_report_default
        patient_download = policy.get("patient_download_allowed")
        buckets = tuple(self.buckets[b] for b in sorted(self.reachable_buckets(subject, study_uid)))
        return AccessFacts(
            now=self.clock(),
            study=study,
            buckets=buckets,
            parents=self.buckets,
            otp_verified_until=self.otp,
            senders=self.senders(buckets),
            break_glass_until=self.break_glass_until(subject, study_uid, doc),
            reference=reference,
            patient_report=patient_report if patient_report in ("none", "read") else "read",
            patient_download=(
                self.patient_download_default
                if patient_download is None
                else bool(patient_download)
            ),
        )

    def institution_of(self, department_id: str | None) -> str | None:
        """A department's institution: the one it names, else the department itself."""
        if not department_id:
            return None
        return self.departments.get(department_id, {}).get("institution_id") or department_id

    def glass_facts(
        self, subject: Subject, study: Doc | None, bucket_refusal: str | None = None
    ) -> GlassFacts:
        """What the study department's break-the-glass policy needs to know of the caller."""
        if study is None:
            return GlassFacts(study_known=False)
        department_id = study.get("department_id")
        department = self.departments.get(department_id or "", {})
        return GlassFacts(
            study_known=True,
            policy=department.get("break_the_glass") or "institution",
            institution_id=self.institution_of(department_id),
            environment=department.get("country"),
            caller_institutions=frozenset(
                i for d in subject.department_ids if (i := self.institution_of(d))
            ),
            caller_environment=subject.environment,
            bucket_refusal=bucket_refusal,
        )

    def break_glass_until(
        self, subject: Subject, study_uid: str, study: Doc | None
    ) -> datetime | None:
        """The end of the caller's unlock of the study, while the department's policy still
        lets them break the glass (a policy made stricter ends earlier unlocks)."""
        until = self.break_glass.get((subject.id, study_uid))
        if until is None or study is None:
            return None
        why_not = why_not_break_the_glass(
            subject.kind, subject.roles, self.glass_facts(subject, study)
        )
        return until if why_not is None else None

    def break_glass_facts(self, principal: AccessClaims, study_uid: str) -> GlassFacts:
        """The facts for a break-the-glass command, the caller's buckets of the study too."""
        subject = self.subject(principal)
        study = self.studies.get(study_uid)
        if study is None:
            return self.glass_facts(subject, None)
        facts = self.facts(subject, study_uid)
        outcomes = (evaluate_grant(subject, b, study_uid, facts) for b in facts.buckets)
        stopper = next((o for o in outcomes if isinstance(o, str) and o in GLASS_STOPPERS), None)
        return self.glass_facts(subject, study, stopper)

    def reachable_buckets(self, subject: Subject, study_uid: str) -> set[str]:
        """The study's buckets naming the subject, its departments, groups or group colleagues
        among their recipients (revoked ones too): no other bucket can grant or refuse it
        (`access_policy.rules.evaluate_grant`), however many others share the study."""
        of_study = self.buckets_by_study.get(study_uid)
        found: set[str] = set()
        if not of_study:
            return found
        names = (subject.id, *subject.department_ids, *subject.group_ids, *subject.colleagues)
        for name in names:
            theirs = self.buckets_by_recipient.get(name)
            if theirs:
                found |= theirs & of_study
        return {b for b in found if b in self.buckets}

    def reference_complies(self, ref: Doc) -> bool:
        """Flagged when issued so, or when it breaks the department's current rule."""
        from studyshare.study_store.domain.reference_numbers import complies

        if not ref.get("complies_with_rule", True):
            return False
        rule = self.reference_rule(ref.get("department_id"))
        return complies(ref.get("reference_number", ""), rule)

    def reference_rule(self, department_id: str | None):
        from studyshare.contracts.events.identity import ReferenceNumberRule

        raw = self.departments.get(department_id or "", {}).get("reference_number_rule")
        return ReferenceNumberRule.model_validate(raw) if raw else ReferenceNumberRule()

    @property
    def fresh(self) -> bool:
        """Whether this model may decide: its lease holds (see the module)."""
        return self.lease.fresh

    def decide(self, principal: AccessClaims, study_uid: str) -> AccessDecision:
        if not self.lease.fresh:
            # Fail closed: a barrier may have taken this model as gone, or it stopped following
            # and could miss a revocation.
            return AccessDecision(
                study_uid=study_uid,
                images=False,
                report="none",
                download=False,
                anonymized=False,
                via=None,
                refusal="stale",
                reason="access decisions are temporarily unavailable",
            )
        subject = self.subject(principal)
        return narrowed(principal, decide(subject, study_uid, self.facts(subject, study_uid)))

    def candidate_studies(self, principal: AccessClaims) -> set[str]:
        """Every study a path could lead to (each is then decided)."""
        if principal.kind == "patient":
            return {principal.study_uid} if principal.study_uid else set()
        if principal.has_role("service_desk"):
            return set(self.studies)
        subject = self.subject(principal)
        found: set[str] = set(self.studies_by_owner.get(subject.id, ()))
        for dep in subject.department_ids:
            found |= self.studies_by_department.get(dep, set())
        recipients = {subject.id, *subject.group_ids, *subject.department_ids}
        for colleague in subject.colleagues:
            recipients.add(colleague)
            found |= self.studies_by_owner.get(colleague, set())
        for rid in recipients:
            for bucket_id in self.buckets_by_recipient.get(rid, ()):
                found |= set(self.bucket_docs[bucket_id].get("study_uids", ()))
        found |= self.break_glass_by_user.get(subject.id, set())
        return found

    def certainly_open(self, principal: AccessClaims) -> set[str]:
        """Studies the caller opens, never anonymized, whatever the grants say: the own
        department's (with a study role), the own, every one for the service desk. Lets the
        overview filter a whole archive without deciding each study (see `access_rules`)."""
        if principal.kind != "user":
            return set()
        subject = self.subject(principal)
        if subject.deactivated:
            return set()
        if "service_desk" in subject.roles:
            return set(self.studies)
        found = set(self.studies_by_owner.get(subject.id, ()))
        if subject.roles & STUDY_ROLES:
            for dep in subject.department_ids:
                found |= self.studies_by_department.get(dep, set())
        return found

    def visible_studies(self, principal: AccessClaims) -> list[str]:
        """The studies the caller may open now (QIDO and the overview); a viewer token's
        one study at most."""
        if not self.lease.fresh:
            return []
        if isinstance(principal, ViewerClaims):
            uid = principal.viewer.study_uid
            return [uid] if uid in self.studies and self.decide(principal, uid).images else []
        certain = self.certainly_open(principal)
        return sorted(
            certain
            | {
                uid
                for uid in self.candidate_studies(principal) - certain
                if uid in self.studies and self.decide(principal, uid).images
            }
        )

    def usable_buckets(self, principal: AccessClaims, study_uid: str) -> list[Doc]:
        """The bucket documents through which the caller opens the study now."""
        subject = self.subject(principal)
        facts = self.facts(subject, study_uid)
        return [
            self.bucket_docs[b.bucket_id]
            for b in facts.buckets
            if not isinstance(evaluate_grant(subject, b, study_uid, facts), str | None)
        ]

    def mark_read(self, user_id: str, study_uid: str, at: datetime) -> None:
        self.reads[(user_id, study_uid)] = at

    def references_of(self, study_uid: str) -> Sequence[Doc]:
        return [self.refs[n] for n in sorted(self.refs_by_study.get(study_uid, ()))]

    def stats(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "last_seq": self.last_seq,
            "docs": len(self.docs),
            "studies": len(self.studies),
            "buckets": len(self.buckets),
            "lease_age_s": None if (age := self.lease.age_s) is None else round(age, 3),
        }
