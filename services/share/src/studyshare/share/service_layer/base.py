"""What every share use case works with: the stores, the directory, the bucket read model, and
the helpers they share (loading a bucket, the holder keys of a user, propagating a narrowed
access to the study store)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import RecipientRef
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.access_barrier import AccessBarrierClient
from studyshare.plumbing.aggregate import Events, Repository
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.logging import get_logger
from studyshare.share.adapters.otp_codes import OtpCodes
from studyshare.share.adapters.readmodel import BucketReadModel, DirectoryReader
from studyshare.share.domain import exceptions
from studyshare.share.domain.anonymized import anonymized_study
from studyshare.share.domain.model import Bucket, Favorites, Labels, SharePreferences
from studyshare.share.settings import ShareSettings

log = get_logger(__name__)


Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RecipientInput:
    kind: str
    id: str | None = None
    email: str | None = None
    language: str | None = None


def actor_of(principal: AccessClaims) -> Actor:
    role = next(iter(principal.roles), None)
    return Actor(id=principal.sub, role=role) if role else Actor(id=principal.sub)


class ShareBase:
    """The stores and helpers of the share service's use cases: MongoDB's (`db`), or, in
    tests that run without a database, the ones given (an in-memory event store, a directory,
    a bucket read model and the codes of two-factor buckets)."""

    def __init__(
        self,
        db: AsyncDatabase | None,
        settings: ShareSettings,
        clock: Clock | None = None,
        *,
        store: Events | None = None,
        readmodel: BucketReadModel | None = None,
        directory: DirectoryReader | None = None,
        otp_codes: OtpCodes | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.store = store or EventStore(db)
        self.readmodel = readmodel or BucketReadModel(db)
        self.directory = directory or DirectoryReader(db)
        self.otp_codes = otp_codes or OtpCodes(db)
        self.buckets = Repository(self.store, Bucket, view=self.readmodel.follow)
        self.favorites = Repository(self.store, Favorites)
        self.preferences = Repository(self.store, SharePreferences)
        self.labels = Repository(self.store, Labels)
        self.access_barrier: AccessBarrierClient | None = None

    async def setup(self) -> None:
        await self.store.ensure_indexes()
        await self.readmodel.ensure_indexes()
        await self.otp_codes.ensure_indexes()

    async def _holder_keys(self, principal: AccessClaims) -> list[str]:
        """The ids through which a user may hold a bucket: themselves, groups, departments
        (the token's, narrowed to those identity still lists once it knows the user)."""
        user, groups = await asyncio.gather(
            self.directory.user(principal.sub), self.directory.groups_of(principal.sub)
        )
        departments = list(principal.department_ids)
        if user is not None:
            now_in = {*user.get("department_ids", ()), *user.get("admin_of", ())}
            departments = [d for d in departments if d in now_in]
        return [principal.sub, *groups, *departments]

    async def _load(self, bucket_id: str) -> Bucket:
        bucket = await self.buckets.get(bucket_id)
        if bucket.shared is None:
            raise exceptions.BucketNotFound(f"no bucket {bucket_id}")
        return bucket

    async def _directory_facts(
        self,
        inputs: Sequence[RecipientInput],
        users: Sequence[str] = (),
        departments: Sequence[str] = (),
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """The directory entries of these recipients (plus `users` and `departments`), by
        kind, read concurrently."""
        ids = {
            kind: sorted({r.id for r in inputs if r.kind == kind and r.id})
            for kind in ("user", "group", "department")
        }
        found = await asyncio.gather(  # independent reads
            self.directory.users(sorted(set(ids["user"]) | set(users))),
            self.directory.groups(ids["group"]),
            self.directory.departments(sorted(set(ids["department"]) | set(departments))),
        )
        return dict(zip(("user", "group", "department"), found, strict=True))

    async def _resolve_recipients(
        self, inputs: Sequence[RecipientInput]
    ) -> tuple[RecipientRef, ...]:
        return resolve_recipients(inputs, await self._directory_facts(inputs))

    async def may_administer(self, principal: AccessClaims, bucket: Bucket | dict) -> bool:
        """Sender, study owner, admin of the sending department (and service desk, auditor
        for reading)."""
        get = (
            (lambda k: bucket.get(k))
            if isinstance(bucket, dict)
            else (lambda k: getattr(bucket, k))
        )
        if get("sender_id") == principal.sub:
            return True
        if get("sending_department_id") and get("sending_department_id") in principal.admin_of:
            return True
        studies = await self.directory.studies(list(get("study_uids")))
        return any(s.get("owner_id") == principal.sub for s in studies.values())

    async def _may_revoke(
        self, principal: AccessClaims, bucket: Bucket, study_uid: str | None
    ) -> bool:
        if bucket.sender_id == principal.sub:
            return True
        if bucket.sending_department_id and bucket.sending_department_id in principal.admin_of:
            return True
        uids = [study_uid] if study_uid else list(bucket.study_uids)
        studies = await self.directory.studies(uids)
        return any(s.get("owner_id") == principal.sub for s in studies.values())

    async def _propagate(self, bucket_ids: Sequence[str]) -> None:
        """Before answering: the study store decides on these buckets' events everywhere
        (`plumbing.access_barrier`); without one configured, nothing."""
        if self.access_barrier is not None:
            await self.access_barrier.propagate(bucket_ids)


def resolve_recipients(
    inputs: Sequence[RecipientInput], known: dict[str, dict[str, dict[str, Any]]]
) -> tuple[RecipientRef, ...]:
    """The recipients as references, refusing unknown or inactive users, groups, departments."""
    resolved: dict[tuple[str, str], RecipientRef] = {}
    for r in inputs:
        if r.kind == "email":
            if not r.email:
                raise exceptions.RecipientNotKnown("an email recipient needs an email address")
            email = r.email.strip().lower()
            ref = RecipientRef(
                recipient_id=f"email:{email}", kind="email", email=email, language=r.language
            )
        else:
            doc = known[r.kind].get(r.id or "")
            if doc is None or doc.get("active") is False:
                raise exceptions.RecipientNotKnown(f"unknown {r.kind} recipient {r.id!r}")
            # a user's own language; a group's or department's as the client says, else its own
            language = (
                doc.get("language") if r.kind == "user" else r.language or doc.get("language")
            )
            ref = RecipientRef(recipient_id=r.id, kind=r.kind, language=language)  # type: ignore[arg-type]
        resolved.setdefault((ref.kind, ref.recipient_id), ref)
    return tuple(resolved.values())


def names_of(known: dict[str, dict[str, dict[str, Any]]]) -> dict[str, str | None]:
    """Display names by id of directory entries read by kind (users, groups, departments)."""
    return {
        **{k: v.get("name") for k, v in known["user"].items()},
        **{k: v.get("name") for k, v in known["group"].items()},
        **{k: v.get("name") for k, v in known["department"].items()},
    }


def study_lines(
    uids: Sequence[str], studies: dict[str, dict[str, Any]], anonymize: bool
) -> list[dict[str, Any]]:
    """The studies of a bucket as its sender's lists name them (initials hidden when
    anonymized)."""
    return [
        {
            "study_uid": uid,
            "description": studies.get(uid, {}).get("description"),
            "study_date": studies.get(uid, {}).get("study_date"),
            "patient_initials": "Anonymous"
            if anonymize
            else studies.get(uid, {}).get("patient_initials"),
        }
        for uid in uids
    ]


def shown_study_lines(
    bucket_id: str, uids: Sequence[str], studies: dict[str, dict[str, Any]], secret: str
) -> list[dict[str, Any]]:
    """The studies of an anonymized bucket as its recipients see them: UID remapped, date
    shifted, no description (`domain.anonymized`, as the study store shows them)."""
    lines = []
    for uid in uids:
        study, shown_uid = anonymized_study(secret, bucket_id, uid, studies.get(uid, {}))
        lines.append(
            {
                "study_uid": shown_uid,
                "description": None,
                "study_date": study.get("study_date"),
                "patient_initials": "Anonymous",
            }
        )
    return lines
