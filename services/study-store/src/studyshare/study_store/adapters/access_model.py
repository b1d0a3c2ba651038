"""The access model of an API process: decisions over a bounded working set of the read model.

The `access_decisions` read model (built by the worker from share, identity and study
events, `adapters.read_models`) stays in MongoDB. For a decision the model gathers the facts
of one (caller, study) pair through `AccessCache`: the study, its buckets, their parents, the
caller's user and groups, the department's policy, codes and unlocks, each a cached document
or one indexed read. Memory follows what is being opened, not how much is stored, and start-up
reads one counter: no process loads the model as a whole.

It is a follower (`studyshare.plumbing.followers`): every `refresh_interval_s` (default 0.1 s)
one indexed query fetches the documents whose `seq` is above the last one seen and hands them
to the cache, which replaces what it holds of them. It records in the study store's
`access_followers` how far it has read (one upsert when that moved, else every quarter lease,
from a loop of its own) and decides only while its lease holds, i.e. the read its last stored
beat reported started less than `lease_s` ago; after that every decision is refused (503
`AccessDecisionsUnavailable`). A revocation or lock is handed to the study store by the share
service (`access_barrier`), which answers once every follower has read it: the recipient's
next request is refused. A replay (new generation) is noticed within a second and empties the
cache.

Events of this service that change access (break-the-glass, reference numbers, read messages)
are folded over the documents at once by the request that appends them (`apply_local`), so the
caller's next request already sees them; the worker's copy replaces them later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from studyshare.access_policy.decision import AccessDecision, ReportAccess
from studyshare.access_policy.glass import GlassFacts, why_not_break_the_glass
from studyshare.access_policy.reference import complies
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
from studyshare.contracts.anonymized import bucket_key, remap_uid
from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events.study import ReferenceNumberShape
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.followers import JOINING, FollowerRegistry, Lease
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.reference_ids import open_number
from studyshare.study_store.adapters.access_cache import AccessCache
from studyshare.study_store.adapters.access_documents import AccessDocuments
from studyshare.study_store.adapters.read_models import Doc, names_of
from studyshare.study_store.domain.serving import VisibleStudies
from studyshare.study_store.domain.viewer import ViewerClaims, narrowed

log = get_logger(__name__)
MAX_CHAIN = 16


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


#: which studies are certainly open: (field, values) pairs, a field of None selecting all
Certain = tuple[tuple[str | None, tuple[str, ...]], ...]
ALL_STUDIES: Certain = ((None, ()),)


def _uid(study: Doc) -> str:
    return study.get("study_uid") or study["_id"].split(":", 1)[1]


class AccessModel:
    """`await decide(principal, study_uid)` and `await visible_studies(principal)`."""

    def __init__(
        self,
        documents: AccessDocuments,
        *,
        refresh_interval_s: float = 0.1,
        patient_report_default: ReportAccess = "read",
        patient_download_default: bool = False,
        clock: Callable[[], datetime] = utcnow,
        lease_s: float = 10.0,
        registry: FollowerRegistry | None = None,
        follower_id: str = "access-model",
        cache_docs: int = 50_000,
        cache_lookups: int = 20_000,
        anonymization_secret: str = "",
        reference_number_secret: str = "",
    ) -> None:
        self.documents = documents
        self.cache = AccessCache(documents, max_docs=cache_docs, max_lookups=cache_lookups)
        self.lease = Lease(lease_s)
        self.registry = registry
        self.follower_id = follower_id
        self.refresh_interval_s = refresh_interval_s
        self.patient_report_default = patient_report_default
        self.patient_download_default = patient_download_default
        self.clock = clock
        self.anonymization_secret = anonymization_secret
        self.reference_number_secret = reference_number_secret
        self.generation = -1
        self.last_seq = 0
        self.read_at: float | None = None
        self._beaten: tuple[int, int] | None = None
        self._moved = asyncio.Event()
        self._nudged = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # -- following the read model -------------------------------------------------------

    async def load(self) -> None:
        """Start on the live generation: its committed sequence number, nothing else."""
        started = time.monotonic()
        generation = await self.documents.generation()
        self.last_seq = await self.documents.use(generation)
        self.cache.clear()
        self.generation = generation
        self._read(started)
        log.info("access_model.loaded", generation=generation, seq=self.last_seq)

    async def refresh(self) -> int:
        """Hand what changed since the last refresh to the cache; return how many changed."""
        started = time.monotonic()
        if await self.documents.generation() != self.generation:
            await self.load()
            return 0
        changed = await self.documents.changed_since(self.last_seq)
        self.cache.changed(changed)
        if changed:
            self.last_seq = max(self.last_seq, max(d.get("seq", 0) for d in changed))
        self._read(started)
        return len(changed)

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
        self.cache.apply_local(envelopes)

    # -- documents ----------------------------------------------------------------------------

    async def study(self, study_uid: str) -> Doc | None:
        return await self.cache.doc(f"study:{study_uid}")

    async def studies(self, study_uids: Iterable[str]) -> dict[str, Doc]:
        """The documents of those of `study_uids` that exist, read together."""
        docs = await self.cache.docs(f"study:{uid}" for uid in study_uids)
        return {i.split(":", 1)[1]: d for i, d in docs.items()}

    def peek_study(self, study_uid: str) -> Doc | None:
        """The study's document if this process holds it now (no read)."""
        return self.cache.peek(f"study:{study_uid}")

    async def department(self, department_id: str | None) -> Doc:
        if not department_id:
            return {}
        return await self.cache.doc(f"department:{department_id}") or {}

    async def reference(self, reference_id: str) -> Doc | None:
        return await self.cache.doc(f"ref:{reference_id}")

    def number_of(self, ref: Doc) -> str | None:
        """A reference's number, opened from its sealed copy (None: sealed under another
        secret); a number issued before numbers were sealed is kept as it was."""
        if ref.get("sealed_number"):
            return open_number(
                ref["sealed_number"], ref["reference_id"], self.reference_number_secret
            )
        return ref.get("legacy_number")

    async def references_of(self, study_uid: str) -> Sequence[Doc]:
        refs = await self.cache.lookup("ref", "study_uid", study_uid)
        return [refs[i] for i in sorted(refs)]

    async def opened_at(self, user_id: str, study_uid: str) -> datetime | None:
        """When the user last opened the study (it reads the message), None if never."""
        doc = await self.cache.doc(f"read:{user_id}:{study_uid}")
        return _aware(doc.get("read_at")) if doc else None

    async def groups_of(self, user_id: str) -> dict[str, Doc]:
        """The groups the user is a member of now, a lapsed membership not counted (no
        access through the group until confirmed)."""
        groups = await self.cache.lookup("group", "member_ids", user_id)
        return {
            d.get("group_id") or i.split(":", 1)[1]: d
            for i, d in groups.items()
            if user_id not in d.get("lapsed_ids", ())
        }

    # -- the caller ---------------------------------------------------------------------------

    async def subject(self, principal: AccessClaims) -> Subject:
        """The caller as the rules see them: token claims, narrowed by what identity said
        since the token was issued (a department left, an account deactivated)."""
        known = await self.cache.doc(f"user:{principal.sub}")
        groups = await self.groups_of(principal.sub)
        departments = frozenset(principal.department_ids)
        admin_of = frozenset(principal.admin_of)
        deactivated = False
        if known is not None:
            departments &= frozenset(known.get("department_ids", ()))
            admin_of &= frozenset(known.get("admin_of", ()))
            deactivated = bool(known.get("deactivated"))
        colleagues: dict[str, str] = {}
        for group_id in sorted(groups):
            group = groups[group_id]
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
            group_ids=frozenset(groups),
            colleagues=colleagues,
            deactivated=deactivated,
            reference_id=principal.reference_id,
            token_study_uid=principal.study_uid,
            environment=principal.environment,
            session_id=principal.sid,
        )

    async def holder(self, user_id: str) -> Subject:
        """A re-share's sender as identity knows them now (no token: the departments and groups
        they are in today), to tell whether they still hold the parent grant."""
        known = await self.cache.doc(f"user:{user_id}") or {}
        groups = await self.groups_of(user_id)
        departments = (*known.get("department_ids", ()), *known.get("admin_of", ()))
        return Subject(
            id=user_id, department_ids=frozenset(departments), group_ids=frozenset(groups)
        )

    # -- the facts of one decision ------------------------------------------------------------

    async def buckets_of(self, study_uid: str) -> dict[str, Doc]:
        """Every bucket sharing the study (revoked ones too), by bucket id."""
        docs = await self.cache.lookup("bucket", "study_uids", study_uid)
        return {d.get("bucket_id") or i.split(":", 1)[1]: d for i, d in docs.items()}

    @staticmethod
    def reachable(subject: Subject, buckets: dict[str, Doc]) -> list[str]:
        """The buckets naming the subject, its departments, groups or group colleagues among
        their recipients (revoked ones too): no other bucket can grant or refuse it
        (`access_policy.rules.evaluate_grant`), however many others share the study."""
        names = {subject.id, *subject.department_ids, *subject.group_ids, *subject.colleagues}
        return sorted(b for b, doc in buckets.items() if names & names_of(doc))

    async def chain(
        self, buckets: Iterable[Bucket]
    ) -> tuple[dict[str, Bucket], dict[str, Subject]]:
        """The parents of the re-shares among `buckets` up their chains, and their senders."""
        parents: dict[str, Bucket] = {}
        senders: dict[str, Subject] = {}
        level = [b for b in buckets if b.parent_bucket_id is not None]
        for _ in range(MAX_CHAIN + 1):
            if not level:
                break
            wanted = {b.parent_bucket_id for b in level if b.parent_bucket_id not in parents}
            docs = await self.cache.docs(f"bucket:{b}" for b in sorted(wanted) if b)
            new_senders = {b.sender_id for b in level} - set(senders)
            for sender, subject in zip(
                new_senders,
                await asyncio.gather(*(self.holder(s) for s in new_senders)),
                strict=True,
            ):
                senders[sender] = subject
            found = [bucket_from_doc(d) for d in docs.values()]
            parents.update((b.bucket_id, b) for b in found)
            level = [b for b in found if b.parent_bucket_id is not None]
        return parents, senders

    async def facts(self, subject: Subject, study_uid: str) -> AccessFacts:
        wanted = [f"study:{study_uid}", f"btg:{subject.id}:{study_uid}"]
        if subject.reference_id:
            wanted.append(f"ref:{subject.reference_id}")
        docs = await self.cache.docs(wanted)
        of_study = await self.buckets_of(study_uid)
        doc = docs.get(f"study:{study_uid}")
        study = (
            StudyFacts(study_uid, doc.get("department_id"), doc.get("owner_id"))
            if doc is not None
            else None
        )
        department = await self.department(doc.get("department_id") if doc else None)
        reference = None
        if subject.reference_id and (ref := docs.get(f"ref:{subject.reference_id}")):
            reference = ReferenceFacts(
                reference_id=ref.get("reference_id", subject.reference_id),
                study_uid=ref.get("study_uid", ""),
                valid_from=_aware(ref.get("valid_from")),
                valid_to=_aware(ref.get("valid_to")),
                complies_with_rule=await self.reference_complies(ref),
                revoked=bool(ref.get("revoked")),
            )
        patient_report = department.get("patient_report_access") or self.patient_report_default
        patient_download = department.get("patient_download_allowed")
        buckets = tuple(bucket_from_doc(of_study[b]) for b in self.reachable(subject, of_study))
        parents, senders = await self.chain(buckets)
        return AccessFacts(
            now=self.clock(),
            study=study,
            buckets=buckets,
            parents=parents,
            otp_verified_until=await self.codes(subject, buckets),
            senders=senders,
            break_glass_until=await self.break_glass_until(
                subject, docs.get(f"btg:{subject.id}:{study_uid}"), doc
            ),
            reference=reference,
            patient_report=patient_report if patient_report in ("none", "read") else "read",
            patient_download=(
                self.patient_download_default
                if patient_download is None
                else bool(patient_download)
            ),
        )

    async def codes(
        self, subject: Subject, buckets: Iterable[Bucket]
    ) -> dict[tuple[str, str, str | None], datetime]:
        """Until when the codes the subject entered in this session open the two-factor
        buckets among `buckets`."""
        ids = {
            (b.bucket_id, f"otp:{b.bucket_id}:{subject.id}:{subject.session_id or ''}")
            for b in buckets
            if b.two_factor
        }
        if not ids:
            return {}
        docs = await self.cache.docs(doc_id for _, doc_id in ids)
        return {
            (bucket_id, subject.id, subject.session_id): until
            for bucket_id, doc_id in ids
            if (until := _aware((docs.get(doc_id) or {}).get("verified_until"))) is not None
        }

    async def institution_of(self, department_id: str | None) -> str | None:
        """A department's institution: the one it names, else the department itself."""
        if not department_id:
            return None
        return (await self.department(department_id)).get("institution_id") or department_id

    async def glass_facts(
        self, subject: Subject, study: Doc | None, bucket_refusal: str | None = None
    ) -> GlassFacts:
        """What the study department's break-the-glass policy needs to know of the caller."""
        if study is None:
            return GlassFacts(study_known=False)
        department_id = study.get("department_id")
        department = await self.department(department_id)
        callers = [await self.institution_of(d) for d in sorted(subject.department_ids)]
        return GlassFacts(
            study_known=True,
            policy=department.get("break_the_glass") or "institution",
            institution_id=await self.institution_of(department_id),
            environment=department.get("country"),
            caller_institutions=frozenset(i for i in callers if i),
            caller_environment=subject.environment,
            bucket_refusal=bucket_refusal,
        )

    async def break_glass_until(
        self, subject: Subject, unlock: Doc | None, study: Doc | None
    ) -> datetime | None:
        """The end of the caller's unlock of the study, while the department's policy still
        lets them break the glass (a policy made stricter ends earlier unlocks)."""
        until = _aware((unlock or {}).get("valid_until"))
        if until is None or study is None:
            return None
        glass = await self.glass_facts(subject, study)
        why_not = why_not_break_the_glass(subject.kind, subject.roles, glass)
        return until if why_not is None else None

    async def break_glass_facts(self, principal: AccessClaims, study_uid: str) -> GlassFacts:
        """The facts for a break-the-glass command, the caller's buckets of the study too."""
        subject = await self.subject(principal)
        study = await self.study(study_uid)
        if study is None:
            return await self.glass_facts(subject, None)
        facts = await self.facts(subject, study_uid)
        outcomes = (evaluate_grant(subject, b, study_uid, facts) for b in facts.buckets)
        stopper = next((o for o in outcomes if isinstance(o, str) and o in GLASS_STOPPERS), None)
        return await self.glass_facts(subject, study, stopper)

    async def may_break_the_glass(self, principal: AccessClaims, study_uid: str) -> bool:
        """Whether the study department's policy lets the caller break the glass on it now."""
        glass = await self.break_glass_facts(principal, study_uid)
        return why_not_break_the_glass(principal.kind, frozenset(principal.roles), glass) is None

    async def reference_complies(self, ref: Doc) -> bool:
        """Flagged when issued so, or when it breaks the department's current rule."""
        if not ref.get("complies_with_rule", True) or not ref.get("number_shape"):
            return False
        rule = await self.reference_rule(ref.get("department_id"))
        return complies(ReferenceNumberShape.model_validate(ref["number_shape"]), rule)

    async def reference_rule(self, department_id: str | None):
        from studyshare.contracts.events.identity import ReferenceNumberRule

        raw = (await self.department(department_id)).get("reference_number_rule")
        return ReferenceNumberRule.model_validate(raw) if raw else ReferenceNumberRule()

    # -- decisions --------------------------------------------------------------------------

    @property
    def fresh(self) -> bool:
        """Whether this model may decide: its lease holds (see the module)."""
        return self.lease.fresh

    async def decide(
        self, principal: AccessClaims, study_uid: str, subject: Subject | None = None
    ) -> AccessDecision:
        """The caller's access to the study now (`subject`: the caller as `subject` made
        them, when deciding many at once)."""
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
        if subject is None:
            subject = await self.subject(principal)
        facts = await self.facts(subject, study_uid)
        return narrowed(principal, decide(subject, study_uid, facts))

    async def candidate_studies(self, principal: AccessClaims) -> set[str]:
        """Every study a path could lead to beyond those certainly open (`certain`): each is
        then decided."""
        if principal.kind == "patient":
            return {principal.study_uid} if principal.study_uid else set()
        subject = await self.subject(principal)
        if self.certain(subject) == ALL_STUDIES:
            return set()
        recipients = sorted({subject.id, *subject.group_ids, *subject.department_ids})
        recipients += sorted(set(subject.colleagues) - set(recipients))
        departments = [] if subject.roles & STUDY_ROLES else sorted(subject.department_ids)
        owned, of_departments, shared, unlocked = await asyncio.gather(
            self._studies("owner_id", sorted(subject.colleagues)),
            self._studies("department_id", departments),
            self.cache.where("bucket", "holder_ids", recipients),
            self.cache.where("btg", "user_id", [subject.id]),
        )
        found = owned | of_departments
        for bucket in shared:
            found.update(bucket.get("study_uids", ()))
        found.update(d["study_uid"] for d in unlocked if d.get("study_uid"))
        return found

    async def _studies(self, field: str, values: Sequence[str]) -> set[str]:
        if not values:
            return set()
        return {_uid(d) for d in await self.cache.where("study", field, values)}

    @staticmethod
    def certain(subject: Subject) -> Certain:
        """Which studies the subject opens, never anonymized, whatever the grants say: the own,
        the own departments' (with a study role), every one for the service desk; as the
        (field, values) that select them (`ALL_STUDIES`: every study)."""
        if subject.kind != "user" or subject.deactivated:
            return ()
        if "service_desk" in subject.roles:
            return ALL_STUDIES
        if subject.roles & STUDY_ROLES and subject.department_ids:
            return (
                ("owner_id", (subject.id,)),
                ("department_id", tuple(sorted(subject.department_ids))),
            )
        return (("owner_id", (subject.id,)),)

    @staticmethod
    def is_certain(certain: Certain, study: Doc) -> bool:
        return any(field is None or study.get(field) in values for field, values in certain)

    async def certain_studies(
        self, principal: AccessClaims, fields: Sequence[str] = ()
    ) -> AsyncIterator[Doc]:
        """The study documents certainly open to the caller (`certain`), streamed: an
        archive is filtered without deciding each study, nor holding it (see
        `access_rules`)."""
        certain = self.certain(await self.subject(principal))
        for at, (field, values) in enumerate(certain):
            async for doc in self.documents.stream("study", field, values, fields):
                if not self.is_certain(certain[:at], doc):  # each once
                    yield self.cache.overlaid(doc)

    async def certainly_open(self, principal: AccessClaims) -> set[str]:
        """The UIDs of `certain_studies`."""
        return {_uid(d) async for d in self.certain_studies(principal, ("_id",))}

    async def visible_studies(self, principal: AccessClaims) -> VisibleStudies:
        """The studies the caller may open now (QIDO), in the clear or anonymized; a viewer
        token's one study at most; every study for the service desk (not one by one)."""
        if not self.lease.fresh:
            return VisibleStudies()
        if isinstance(principal, ViewerClaims):
            uid = principal.viewer.study_uid
            opens = await self.study(uid) is not None
            return VisibleStudies.of([await self.decide(principal, uid)] if opens else [])
        if self.certain(await self.subject(principal)) == ALL_STUDIES:
            return VisibleStudies(every=True)
        certain = await self.certainly_open(principal)
        others = sorted(await self.candidate_studies(principal) - certain)
        decisions = await self.decide_many(principal, others)
        return VisibleStudies.of(decisions.values(), certain)

    async def decide_many(
        self, principal: AccessClaims, study_uids: Sequence[str]
    ) -> dict[str, AccessDecision]:
        """Decisions on many studies: their documents, the caller's unlocks of them and
        their buckets read together first."""
        await self.cache.docs(
            [
                *(f"study:{uid}" for uid in study_uids),
                *(f"btg:{principal.sub}:{uid}" for uid in study_uids),
            ]
        )
        await self.cache.lookups("bucket", "study_uids", study_uids)
        subject = await self.subject(principal)
        return {uid: await self.decide(principal, uid, subject) for uid in study_uids}

    async def usable_buckets(self, principal: AccessClaims, study_uid: str) -> list[Doc]:
        """The bucket documents through which the caller opens the study now."""
        subject = await self.subject(principal)
        facts = await self.facts(subject, study_uid)
        of_study = await self.buckets_of(study_uid)
        return [
            of_study[b.bucket_id]
            for b in facts.buckets
            if not isinstance(evaluate_grant(subject, b, study_uid, facts), str | None)
        ]

    async def reaches(self, principal: AccessClaims, study_uid: str, bucket_id: str) -> bool:
        """Is the study's bucket one that can grant or refuse the caller (`reachable`)?"""
        of_study = await self.buckets_of(study_uid)
        return bucket_id in self.reachable(await self.subject(principal), of_study)

    async def remapped_study(self, remapped_uid: str) -> tuple[str, str] | None:
        """(real study UID, bucket id) of a study UID an anonymized share shows, else None."""
        for doc in await self.cache.where("bucket", "remapped_study_uids", [remapped_uid]):
            bucket_id = doc.get("bucket_id") or doc["_id"].split(":", 1)[1]
            key = bucket_key(self.anonymization_secret, bucket_id)
            for uid in doc.get("study_uids", ()):
                if remap_uid(key, uid) == remapped_uid:
                    return uid, bucket_id
        return None

    def mark_read(self, user_id: str, study_uid: str, at: datetime) -> None:
        self.cache.mark_read(user_id, study_uid, at)

    def stats(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "last_seq": self.last_seq,
            **self.cache.stats(),
            "lease_age_s": None if (age := self.lease.age_s) is None else round(age, 3),
        }
