"""Command handlers: look up the facts, let the domain decide, append, render the read model."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import AccessLevel, Label, RecipientRef, StudyShared
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.access_barrier import AccessBarrierClient
from studyshare.plumbing.aggregate import Repository, new_id
from studyshare.plumbing.eventstore import EventStore, envelope_for
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.sealing import seal
from studyshare.share.adapters.readmodel import (
    OTP_CODES,
    BucketReadModel,
    DirectoryReader,
    policy_of,
    share_options,
)
from studyshare.share.domain import rules
from studyshare.share.domain.anonymized import anonymized_study
from studyshare.share.domain.model import (
    LEVELS,
    Bucket,
    Favorites,
    Labels,
    OTPRequestLimit,
    SharePreferences,
    ShareRequest,
    check_within_held,
    decide_share,
    holds_bucket,
)
from studyshare.share.settings import ShareSettings

log = get_logger(__name__)
Clock = Callable[[], datetime]
OTP_RETRIES = 200
CASCADE_ACTOR = "system:share-cascade"


@dataclass(frozen=True)
class RecipientInput:
    kind: str
    id: str | None = None
    email: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class ShareCommand:
    """A share as the sender asked for it (the API's body, without HTTP)."""

    study_uids: tuple[str, ...]
    recipients: tuple[RecipientInput, ...]
    access_level: AccessLevel
    reason: str
    patient_agreed: bool
    language: str | None = None
    valid_until: datetime | date | None = None
    """A date without a time: the end of that day in the sending department's time zone."""
    unlimited: bool = False
    label: Label | None = None
    urgent: bool = False
    anonymize: bool = False
    allow_further_sharing: bool = False
    allow_download: bool = False
    include_uploaded_together: bool = False
    message: str | None = None
    two_factor: bool | None = None
    send_mail: bool | None = None
    hipaa_confirmed: bool | None = None
    add_to_favorites: tuple[str, ...] = ()
    parent_bucket_id: str | None = None


@dataclass
class ShareResult:
    bucket: Bucket
    confirmation: dict[str, Any]
    confirmation_text: str
    favorites_added: list[str] = field(default_factory=list)


def actor_of(principal: AccessClaims) -> Actor:
    role = next(iter(principal.roles), None)
    return Actor(id=principal.sub, role=role) if role else Actor(id=principal.sub)


class ShareService:
    """The use cases of the share service."""

    def __init__(
        self, db: AsyncDatabase, settings: ShareSettings, clock: Clock | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.store = EventStore(db)
        self.buckets = Repository(self.store, Bucket)
        self.favorites = Repository(self.store, Favorites)
        self.preferences = Repository(self.store, SharePreferences)
        self.labels = Repository(self.store, Labels)
        self.readmodel = BucketReadModel(db)
        self.directory = DirectoryReader(db)
        self.access_barrier: AccessBarrierClient | None = None

    async def setup(self) -> None:
        await self.store.ensure_indexes()
        await self.readmodel.ensure_indexes()
        await self.db[OTP_CODES].create_index([("bucket_id", 1), ("user_id", 1), ("mac", 1)])

    # ------------------------------------------------------------------ helpers
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
            raise rules.BucketNotFound(f"no bucket {bucket_id}")
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

    async def _save(self, bucket: Bucket) -> None:
        await self.readmodel.save(bucket)

    # ------------------------------------------------------------------ share
    async def share(self, principal: AccessClaims, cmd: ShareCommand) -> ShareResult:
        """Check everything first; a refusal stores nothing. Then one bucket, in one write
        together with its read model, then preferences and favourites."""
        now = self.clock()
        study_uids = list(dict.fromkeys(cmd.study_uids))
        parent: Bucket | None = None
        if cmd.parent_bucket_id:
            parent = await self._load(cmd.parent_bucket_id)
        studies, known, prefs = await asyncio.gather(  # independent reads
            self.directory.studies(study_uids),
            self._directory_facts(cmd.recipients, [principal.sub], principal.department_ids),
            self.preferences.get(f"pref_{principal.sub}"),
        )
        if cmd.include_uploaded_together and studies:
            batches = [s["upload_batch_id"] for s in studies.values() if s.get("upload_batch_id")]
            for uid in await self.directory.uploaded_together(batches):
                if uid not in study_uids:
                    study_uids.append(uid)
            studies = await self.directory.studies(study_uids)
        if parent is None and not self._may_share_directly(principal, study_uids, studies):
            parent = await self._held_parent(principal, study_uids, now)
            if parent is None:
                unknown = [uid for uid in study_uids if uid not in studies]
                if unknown:
                    raise rules.StudyNotKnown(f"studies not received (yet): {unknown}")
                raise rules.NotAllowedToShareStudy(
                    "you may share only your own or your department's studies, or studies "
                    "shared with you with 'allow further sharing'"
                )
        if parent is not None:
            if cmd.include_uploaded_together:
                study_uids = [u for u in study_uids if u in parent.active_study_uids]
            sending_department = parent.sending_department_id
        else:
            sending_department = studies[study_uids[0]].get("department_id") if study_uids else None
        recipients = resolve_recipients(cmd.recipients, known)
        favorites = [r for r in recipients if r.recipient_id in set(cmd.add_to_favorites)]
        missing = set(cmd.add_to_favorites) - {r.recipient_id for r in recipients}
        if missing:
            raise rules.FavoriteNotARecipient(f"not among the recipients: {sorted(missing)}")
        two_factor = prefs.two_factor if cmd.two_factor is None else cmd.two_factor
        send_mail = prefs.send_mail if cmd.send_mail is None else cmd.send_mail
        if sending_department in known["department"]:
            policy, _country = policy_of(known["department"][sending_department])
        else:
            policy, _country = await self.directory.policy(sending_department)
        request = ShareRequest(
            bucket_id=new_id("bkt"),
            sender_id=principal.sub,
            study_uids=tuple(study_uids),
            recipients=recipients,
            access_level=cmd.access_level,
            reason=cmd.reason,
            patient_agreed=cmd.patient_agreed,
            language=cmd.language,
            valid_until=cmd.valid_until,
            unlimited=cmd.unlimited,
            label=cmd.label,
            urgent=cmd.urgent,
            anonymize=cmd.anonymize,
            allow_further_sharing=cmd.allow_further_sharing,
            allow_download=cmd.allow_download,
            message=cmd.message,
            two_factor=two_factor,
            send_mail=send_mail,
            hipaa_confirmed=cmd.hipaa_confirmed,
            sending_department_id=sending_department,
            policy=policy,
            pacs_recipient_ids=pacs_recipients(recipients, known),
        )
        if parent is not None:
            check_within_held(
                request,
                parent,
                set(await self._holder_keys(principal)),
                session_id=principal.sid,
                now=now,
            )
        shared = decide_share(request, now, parent)
        bucket = await self._create(shared, actor_of(principal), now)
        if prefs.remember(principal.sub, two_factor, send_mail):
            await self.preferences.execute(
                f"pref_{principal.sub}",
                lambda p: p.remember(principal.sub, two_factor, send_mail),
                actor_of(principal),
                retries=50,
                loaded=prefs,
            )
        added: list[str] = []
        if favorites:
            _, envelopes = await self.favorites.execute(
                f"fav_{principal.sub}",
                lambda f: f.add(principal.sub, favorites),
                actor_of(principal),
                retries=50,
            )
            added = [e.payload["favorite_id"] for e in envelopes]
        confirmation = confirmation_of(bucket, studies, known)
        log.info(
            "bucket.shared",
            bucket_id=bucket.id,
            studies=len(shared.study_uids),
            recipients=len(shared.recipients),
            parent_bucket_id=shared.parent_bucket_id,
        )
        return ShareResult(bucket, confirmation, confirmation_text(confirmation), added)

    @staticmethod
    def _may_share_directly(
        principal: AccessClaims, study_uids: list[str], studies: dict[str, dict[str, Any]]
    ) -> bool:
        """Every study is known and belongs to the sender's department or to the sender."""
        return all(
            uid in studies
            and (
                studies[uid].get("department_id") in principal.department_ids
                or studies[uid].get("owner_id") == principal.sub
            )
            for uid in study_uids
        )

    async def _held_parent(
        self, principal: AccessClaims, study_uids: list[str], now: datetime
    ) -> Bucket | None:
        """A re-share without `parent_bucket_id`: the bucket held by the sender holding all
        the studies with the most rights, or None when no bucket holds them."""
        if not study_uids:
            return None
        docs = await self.readmodel.held_by(await self._holder_keys(principal), now)
        holding = [d for d in docs if set(study_uids) <= set(d["active_study_uids"])]
        if not holding:
            return None
        further = [d for d in holding if d["allow_further_sharing"]]
        if not further:
            raise rules.FurtherSharingNotAllowed(
                "these studies were shared with you without 'allow further sharing'"
            )
        far = datetime.max.replace(tzinfo=now.tzinfo)
        best = max(
            further,
            key=lambda d: (
                LEVELS[d["access_level"]],
                d["allow_download"],
                not d["anonymize"],
                not d["two_factor"],
                far if d["unlimited"] else d["valid_until"],
            ),
        )
        return await self._load(best["_id"])

    async def _create(self, shared: StudyShared, actor: Actor, now: datetime) -> Bucket:
        """Append the bucket's first event and its read model in one transaction (retried
        whole on a transient write conflict with concurrent senders)."""

        envelope = envelope_for(
            shared, aggregate_id=shared.bucket_id, aggregate_version=1, actor=actor
        )

        async def write(session: AsyncClientSession) -> Bucket:
            await self.store.append([envelope], session=session)
            bucket = Bucket(shared.bucket_id)
            bucket.apply(shared)
            bucket.shared_at = now
            await self.readmodel.insert(bucket, session=session)
            return bucket

        async with self.db.client.start_session() as session:
            return await session.with_transaction(write)

    async def share_again(
        self,
        principal: AccessClaims,
        bucket_id: str,
        recipients: Sequence[RecipientInput],
        overrides: dict[str, Any],
    ) -> ShareResult:
        """The same set of studies, with new recipients, under the same parameters."""
        original = await self._load(bucket_id)
        if original.sender_id != principal.sub:
            raise rules.NotTheSender("only the sender can share this bucket again")
        s = original.s
        now = self.clock()
        valid_until = s.valid_until if s.valid_until and s.valid_until > now else None
        base: dict[str, Any] = dict(
            study_uids=tuple(original.active_study_uids),
            recipients=tuple(recipients),
            access_level=s.access_level,
            reason=s.reason,
            patient_agreed=s.patient_agreed,
            valid_until=None if s.unlimited else valid_until,
            unlimited=s.unlimited,
            label=s.label,
            urgent=s.urgent,
            anonymize=s.anonymize,
            allow_further_sharing=s.allow_further_sharing,
            allow_download=s.allow_download,
            message=s.message,
            two_factor=s.two_factor,
            send_mail=s.send_mail,
            hipaa_confirmed=s.hipaa_confirmed,
            parent_bucket_id=s.parent_bucket_id,
        )
        if "valid_until" in overrides and overrides["valid_until"] is not None:
            base["unlimited"] = False
        if overrides.get("unlimited"):
            base["valid_until"] = None
        base.update({k: v for k, v in overrides.items() if v is not None})
        return await self.share(principal, ShareCommand(**base))

    # ------------------------------------------------------------------ views
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

    async def view(self, principal: AccessClaims, bucket_id: str) -> tuple[Bucket, bool]:
        """The bucket and whether the caller sees it as its administrator (with the reason)."""
        bucket = await self._load(bucket_id)
        if await self.may_administer(principal, bucket) or principal.has_role(
            "service_desk", "auditor"
        ):
            return bucket, True
        keys = await self._holder_keys(principal)
        if any(bucket.recipient_of(key) for key in keys):
            return bucket, False
        raise rules.BucketNotFound(f"no bucket {bucket_id}")

    async def buckets_of_study(self, principal: AccessClaims, study_uid: str) -> list[dict]:
        """The Access tab's buckets: all of them for the service desk, auditors and the staff
        of the study's department (issue 16, point 3); those one administers (sender, exam
        owner, sending department's admin) for anyone else. `may_revoke` says which ones the
        caller may withdraw (`_may_revoke`'s rule), so the tab offers only those crosses."""
        docs = await self.readmodel.of_study(study_uid)
        study = (await self.directory.studies([study_uid])).get(study_uid) or {}
        department = study.get("department_id")
        sees_all = principal.has_role("service_desk", "auditor") or (
            department is not None and department in principal.department_ids
        )
        administered = {d["_id"] for d in docs if await self.may_administer(principal, d)}
        if not sees_all:
            docs = [d for d in docs if d["_id"] in administered]

        def may_revoke(d: dict[str, Any]) -> bool:
            return (
                d["sender_id"] == principal.sub
                or (d.get("sending_department_id") or "") in principal.admin_of
                or study.get("owner_id") == principal.sub
            )

        children: dict[str, list[str]] = {}
        for d in docs:
            if d.get("parent_bucket_id"):
                children.setdefault(d["parent_bucket_id"], []).append(d["_id"])
        names = await self.names_in(docs)
        return [
            {
                **d,
                "children": children.get(d["_id"], []),
                "may_revoke": may_revoke(d),
                "sender_name": names.get(d["sender_id"]),
                "recipients": [
                    {**r, "name": names.get(r["recipient_id"])} for r in d["recipients"]
                ],
            }
            for d in docs
        ]

    async def names_in(self, docs: list[dict[str, Any]]) -> dict[str, str]:
        """The directory's names of the senders and of the user, group and department
        recipients of these bucket views (the Access tab shows names, not ids)."""
        wanted: dict[str, set[str]] = {"user": set(), "group": set(), "department": set()}
        for d in docs:
            wanted["user"].add(d["sender_id"])
            for r in d["recipients"]:
                if r["kind"] in wanted:
                    wanted[r["kind"]].add(r["recipient_id"])
        found = await asyncio.gather(
            self.directory.users(sorted(wanted["user"])),
            self.directory.groups(sorted(wanted["group"])),
            self.directory.departments(sorted(wanted["department"])),
        )
        return {k: v["name"] for kind in found for k, v in kind.items() if v.get("name")}

    async def shared_with_me(
        self,
        principal: AccessClaims,
        *,
        unread: bool | None = None,
        urgent: bool | None = None,
        study_uid: str | None = None,
        label: str | None = None,
        bucket_id: str | None = None,
    ) -> list[dict[str, Any]]:
        now = self.clock()
        own = [principal.sub, *principal.department_ids]
        groups, docs = await asyncio.gather(  # the user's groups while their own buckets load
            self.directory.groups_of(principal.sub), self.readmodel.held_by(own, now)
        )
        keys = [principal.sub, *groups, *principal.department_ids]
        if groups:
            docs = newest_first(docs + await self.readmodel.held_by(groups, now))
        if bucket_id is not None:
            docs = [d for d in docs if d["_id"] == bucket_id]
        uids = sorted({u for d in docs for u in d["active_study_uids"]})
        studies, opened, senders = await asyncio.gather(  # independent reads
            self.directory.studies(uids),
            self.directory.opened(principal.sub, uids),
            self.directory.users(sorted({d["sender_id"] for d in docs})),
        )
        items = []
        for d in docs:
            via = [
                r
                for r in d["recipients"]
                if (r["recipient_id"] in keys or r.get("user_id") in keys) and not r["revoked"]
            ]
            for uid in d["active_study_uids"]:
                study = studies.get(uid, {})
                if d["anonymize"]:  # as the study store shows it (PS3.15 Annex E)
                    study, shown_uid = anonymized_study(
                        self.settings.anonymization_secret, d["_id"], uid, study
                    )
                else:
                    shown_uid = uid
                is_read = uid in opened
                item = {
                    "bucket_id": d["_id"],
                    "study_uid": shown_uid,
                    "position": d["study_uids"].index(uid) + 1 if uid in d["study_uids"] else 0,
                    "description": study.get("description"),
                    "study_date": study.get("study_date"),
                    "patient_initials": "Anonymous"
                    if d["anonymize"]
                    else study.get("patient_initials"),
                    "sender": {
                        "id": d["sender_id"],
                        "name": senders.get(d["sender_id"], {}).get("name"),
                    },
                    "via": [{"id": r["recipient_id"], "kind": r["kind"]} for r in via],
                    "message": d["message"],
                    "read": is_read,
                    "message_state": None
                    if not d["message"]
                    else ("read" if is_read else "unread"),
                    "label": d["label"],
                    "urgent": d["urgent"],
                    "valid_until": d["valid_until"],
                    "unlimited": d["unlimited"],
                    "access_level": d["access_level"],
                    "report_access": d["report_access"],
                    "anonymize": d["anonymize"],
                    "allow_download": d["allow_download"],
                    "allow_further_sharing": d["allow_further_sharing"],
                    "two_factor": d["two_factor"],
                    "locked": d["locked"],
                    "shared_at": d["shared_at"],
                }
                if unread is not None and is_read == unread:
                    continue
                if urgent is not None and d["urgent"] != urgent:
                    continue
                if study_uid and shown_uid != study_uid:
                    continue
                if label and (d["label"] or {}).get("text") != label:
                    continue
                items.append(item)
        return items

    async def sent_by_me(
        self,
        principal: AccessClaims,
        limit: int,
        offset: int,
        *,
        status: str | None = None,
        locked: bool | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """ "My shares": the buckets the caller sent (in a state, locked or not), the latest
        first, each with its studies (as its confirmation lists them) and its recipients'
        names."""
        docs, total = await self.readmodel.sent_by(
            principal.sub, limit, offset, status=status, locked=locked
        )
        return await self._listed(docs), total

    async def locked_buckets(
        self, principal: AccessClaims, department_id: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The locked buckets of a department, for its admins and the service desk (who may
        unlock them); the service desk may leave the department out (every locked bucket)."""
        desk = principal.has_role("service_desk")
        if department_id is None:
            if not desk:
                raise rules.NotAllowedToUnlock(
                    "name your department: only the service desk lists every locked bucket"
                )
            departments = None
        elif desk or department_id in principal.admin_of:
            departments = [department_id]
        else:
            raise rules.NotAllowedToUnlock(
                "only the service desk or an admin of the department lists its locked buckets"
            )
        docs, total = await self.readmodel.locked_of(departments, limit, offset)
        return await self._listed(docs), total

    async def _listed(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Buckets with their studies (as their confirmations list them) and recipients' names."""
        uids = sorted({u for d in docs for u in d["study_uids"]})
        inputs = [
            RecipientInput(r["kind"], r["recipient_id"])
            for d in docs
            for r in d["recipients"]
            if r["kind"] != "email"
        ]
        studies, known = await asyncio.gather(
            self.directory.studies(uids), self._directory_facts(inputs)
        )
        names = names_of(known)
        return [
            {
                **d,
                "studies": study_lines(d["study_uids"], studies, d["anonymize"]),
                "recipients": [
                    {**r, "name": names.get(r["recipient_id"]) or r.get("email")}
                    for r in d["recipients"]
                ],
            }
            for d in docs
        ]

    async def accept_invitation(self, principal: AccessClaims, bucket_id: str) -> Bucket:
        """The caller's account, registered with the invited e-mail address (as identity
        told the directory), takes the place of the bucket's e-mail recipient."""
        user = await self.directory.user(principal.sub)
        email = (user or {}).get("email")
        bucket, _ = await self.buckets.execute(
            bucket_id,
            lambda b: b.accept_invitation(principal.sub, email, self.clock()),
            actor_of(principal),
        )
        await self._save(bucket)
        return bucket

    # ------------------------------------------------------------------ revocation
    async def revoke(
        self,
        principal: AccessClaims,
        bucket_id: str,
        scope: str,
        *,
        recipient_id: str | None = None,
        study_uid: str | None = None,
    ) -> Bucket:
        bucket = await self._load(bucket_id)
        if not await self._may_revoke(principal, bucket, study_uid):
            raise rules.NotAllowedToRevoke(
                "only the sender, the study owner or an admin of the sending department may revoke"
            )
        bucket, _ = await self.buckets.execute(
            bucket_id,
            lambda b: b.revoke(
                scope, principal.sub, recipient_id=recipient_id, study_uid=study_uid
            ),
            actor_of(principal),
        )
        await self._save(bucket)
        ended = await self._cascade(principal.sub, actor_of(principal), bucket_id, scope, study_uid)
        await self._propagate([bucket_id, *ended])
        return bucket

    async def _propagate(self, bucket_ids: Sequence[str]) -> None:
        """Before answering: the study store decides on these buckets' events everywhere
        (`plumbing.access_barrier`); without one configured, nothing."""
        if self.access_barrier is not None:
            await self.access_barrier.propagate(bucket_ids)

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

    async def holder_keys_of(self, user_id: str, *, left: str | None = None) -> set[str]:
        """The ids through which a user holds buckets now, from the directory (not a token):
        themselves, their groups, their departments; `left` is one they just left."""
        user, groups = await asyncio.gather(
            self.directory.user(user_id), self.directory.groups_of(user_id)
        )
        user = user or {}
        keys = {user_id, *groups, *user.get("department_ids", ()), *user.get("admin_of", ())}
        return keys - {left} if left else keys

    async def _cascade(
        self,
        by: str,
        actor: Actor,
        parent_id: str,
        scope: str,
        study_uid: str | None,
    ) -> list[str]:
        """Everything re-shared from what was revoked is revoked too, down the chain: a whole
        bucket or a study ends its re-shares; a revoked recipient (a user, a group, a
        department) ends the re-shares of every sender who no longer holds the bucket.
        Returns the re-shares it revoked."""
        ended: list[str] = []
        parent = await self.readmodel.get(parent_id) if scope == "recipient" else None
        for child in await self.readmodel.children(parent_id):
            if child["revoked"]:
                continue
            child_scope, child_study = "bucket", None
            if scope == "study":
                if study_uid not in child["active_study_uids"]:
                    continue
                child_scope, child_study = "study", study_uid
            elif scope == "recipient" and parent is not None:
                keys = await self.holder_keys_of(child["sender_id"])
                if holds_bucket(parent["active_recipient_ids"], keys):
                    continue
            ended += await self._revoke_child(
                by, actor, parent_id, child["_id"], child_scope, child_study
            )
        return ended

    async def _revoke_child(
        self,
        by: str,
        actor: Actor,
        parent_id: str,
        child_id: str,
        scope: str,
        study_uid: str | None,
    ) -> list[str]:
        """Revoke one re-share and what was re-shared from it; the buckets revoked."""
        bucket, _ = await self.buckets.execute(
            child_id,
            lambda b: (
                []
                if b.revoked
                else b.revoke(scope, by, study_uid=study_uid, cascade_from=parent_id)
            ),
            actor,
        )
        await self._save(bucket)
        return [child_id, *await self._cascade(by, actor, child_id, scope, study_uid)]

    async def end_reshares_no_longer_held(
        self, user_id: str, keys: set[str], by: str, left_at: datetime
    ) -> list[str]:
        """A user left a department or group at `left_at`: every re-share they sent before from
        a bucket they no longer hold (through `keys`, what they are in now) ends, with what was
        re-shared from it. Idempotent: an ended re-share is skipped."""
        ended: list[str] = []
        actor = Actor.system(CASCADE_ACTOR)
        for child in await self.readmodel.reshares_sent_by(user_id, before=left_at):
            parent = await self.readmodel.get(child["parent_bucket_id"])
            if parent is None or parent["revoked"]:
                continue
            if holds_bucket(parent["active_recipient_ids"], keys):
                continue
            await self._revoke_child(by, actor, parent["_id"], child["_id"], "bucket", None)
            ended.append(child["_id"])
        if ended:
            log.info("reshares.ended_with_membership", user_id=user_id, buckets=len(ended))
        return ended

    async def expire_due(self, now: datetime | None = None) -> list[str]:
        """Append `BucketExpired` once per bucket past `valid_until`."""
        now = now or self.clock()
        expired = []
        for bucket_id in await self.readmodel.due_for_expiry(now):
            bucket, envelopes = await self.buckets.execute(
                bucket_id, lambda b: b.expire(now), Actor(id="system:share-expiry")
            )
            await self._save(bucket)
            if envelopes:
                expired.append(bucket_id)
        if expired:
            log.info("buckets.expired", count=len(expired))
        return expired

    # ------------------------------------------------------------------ two-factor
    def _mac(self, bucket_id: str, user_id: str, code: str) -> str:
        key = self.settings.otp_hmac_secret.encode()
        return hmac.new(key, f"{bucket_id}|{user_id}|{code}".encode(), hashlib.sha256).hexdigest()

    async def _holder(self, principal: AccessClaims, bucket: Bucket) -> str:
        """How the caller holds the bucket: themselves or a group/department, active first."""
        keys = await self._holder_keys(principal)
        for key in [k for k in keys if k in bucket.holder_ids] + keys:
            recipient = bucket.recipient_of(key)
            if recipient is not None:
                return recipient  # a revoked holder is refused by the domain with its rule
        raise rules.BucketNotFound(f"no bucket {bucket.id}")

    @property
    def otp_request_limit(self) -> OTPRequestLimit:
        return OTPRequestLimit(
            self.settings.otp_requests_per_window,
            timedelta(seconds=self.settings.otp_request_window_seconds),
        )

    async def request_otp(self, principal: AccessClaims, bucket_id: str) -> datetime:
        """A fresh 6-digit code, kept only as a keyed hash; sealed for notify in the event.
        Rate-limited per recipient and bucket; it voids the recipient's earlier codes."""
        now = self.clock()
        bucket = await self._load(bucket_id)
        holder = await self._holder(principal, bucket)
        bucket._check_otp_allowed(holder, now)
        user = await self.directory.user(principal.sub)
        if not user or not user.get("mobile"):
            raise rules.NoRegisteredMobile("register a mobile number to receive the code by SMS")
        code = f"{secrets.randbelow(10**6):06d}"
        otp_id = new_id("otp")
        expires_at = now + timedelta(seconds=self.settings.otp_ttl_seconds)
        await self.db[OTP_CODES].insert_one(
            {
                "_id": otp_id,
                "bucket_id": bucket_id,
                "user_id": principal.sub,
                "mac": self._mac(bucket_id, principal.sub, code),
                "expires_at": expires_at,
            }
        )
        sealed = seal(code, self.settings.otp_seal_public_key)
        limit = self.otp_request_limit
        try:
            await self.buckets.execute(
                bucket_id,
                lambda b: b.request_otp(
                    holder,
                    principal.sub,
                    otp_id,
                    sealed,
                    expires_at,
                    user.get("language") or "en",
                    now,
                    limit,
                ),
                actor_of(principal),
                retries=OTP_RETRIES,
            )
        except BaseException:
            await self.db[OTP_CODES].delete_one({"_id": otp_id})
            raise
        await self.db[OTP_CODES].delete_many(  # voided by the new code
            {
                "bucket_id": bucket_id,
                "user_id": principal.sub,
                "expires_at": {"$lte": expires_at},
                "_id": {"$ne": otp_id},
            }
        )
        return expires_at

    async def verify_otp(self, principal: AccessClaims, bucket_id: str, code: str) -> datetime:
        """Each attempt appends at the next version; a conflict reloads and decides again, so
        five wrong codes lock the bucket however many arrive at once."""
        now = self.clock()
        bucket = await self._load(bucket_id)
        holder = await self._holder(principal, bucket)
        bucket._check_otp_allowed(holder, now)
        matched = await self.db[OTP_CODES].find_one(
            {
                "bucket_id": bucket_id,
                "user_id": principal.sub,
                "mac": self._mac(bucket_id, principal.sub, code.strip()),
            },
            sort=[("expires_at", -1)],
        )
        otp_id = matched["_id"] if matched else None
        verified_for = timedelta(hours=self.settings.otp_verified_hours)
        bucket, envelopes = await self.buckets.execute(
            bucket_id,
            lambda b: b.verify_otp(holder, principal.sub, otp_id, now, verified_for, principal.sid),
            actor_of(principal),
            retries=OTP_RETRIES,
        )
        await self._save(bucket)
        kinds = [e.event_type for e in envelopes]
        if "OTPVerified" in kinds:
            await self.db[OTP_CODES].delete_one({"_id": otp_id})
            return bucket.verified_until[(principal.sub, principal.sid)]
        if "BucketLocked" in kinds:
            await self._propagate([bucket_id])
            raise rules.BucketIsLocked(
                f"that was the 5th wrong code in a row: bucket {bucket_id} is now locked"
            )
        raise rules.WrongOTP(
            f"wrong, expired or already used code ({bucket.consecutive_failures} of 5 in a row)"
        )

    async def unlock(self, principal: AccessClaims, bucket_id: str) -> Bucket:
        await self._load(bucket_id)
        bucket, _ = await self.buckets.execute(
            bucket_id,
            lambda b: b.unlock(principal.sub, principal.roles, principal.admin_of),
            actor_of(principal),
        )
        await self._save(bucket)
        return bucket

    # ------------------------------------------------------------------ favourites
    async def list_favorites(self, principal: AccessClaims) -> dict[str, RecipientRef]:
        return (await self.favorites.get(f"fav_{principal.sub}")).items

    async def recipient_names(self, refs: Iterable[RecipientRef]) -> dict[str, str | None]:
        """Display names of recipients from the directory (an e-mail recipient: its address)."""
        refs = list(refs)
        known = await self._directory_facts(
            [RecipientInput(r.kind, r.recipient_id) for r in refs if r.kind != "email"]
        )
        names = names_of(known)
        return {r.recipient_id: names.get(r.recipient_id) or r.email for r in refs}

    async def add_favorite(
        self, principal: AccessClaims, r: RecipientInput
    ) -> tuple[str, RecipientRef]:
        (ref,) = await self._resolve_recipients([r])
        fav, _ = await self.favorites.execute(
            f"fav_{principal.sub}", lambda f: f.add(principal.sub, [ref]), actor_of(principal)
        )
        favorite_id = fav.find(ref)
        assert favorite_id is not None
        return favorite_id, ref

    async def remove_favorite(self, principal: AccessClaims, favorite_id: str) -> None:
        await self.favorites.execute(
            f"fav_{principal.sub}",
            lambda f: f.remove(principal.sub, favorite_id),
            actor_of(principal),
        )

    # ------------------------------------------------------------------ labels
    async def list_labels(self, principal: AccessClaims) -> list[dict[str, Any]]:
        """My own labels (seen by me only), then those of each group I am a member of."""
        groups = sorted(await self.directory.groups_of(principal.sub))
        names = await self.directory.groups(groups) if groups else {}
        lists = await asyncio.gather(
            self.labels.get(f"labels_{principal.sub}"),
            *(self.labels.get(f"labels_{g}") for g in groups),
        )
        owners = [("user", principal.sub, None), *(("group", g, names.get(g)) for g in groups)]
        return [
            {
                "label_id": item.label_id,
                "text": item.text,
                "scope": kind,
                "group_id": owner if kind == "group" else None,
                "group_name": (name or {}).get("name") if kind == "group" else None,
            }
            for (kind, owner, name), labels in zip(owners, lists, strict=True)
            for item in sorted(labels.items.values(), key=lambda i: i.text.casefold())
        ]

    async def _label_owner(self, principal: AccessClaims, group_id: str | None) -> tuple[str, str]:
        if group_id is None:
            return "user", principal.sub
        if group_id not in await self.directory.groups_of(principal.sub):
            raise rules.NotAMemberOfGroup("a group's labels are for its members")
        return "group", group_id

    async def add_label(
        self, principal: AccessClaims, text: str, group_id: str | None
    ) -> dict[str, Any]:
        kind, owner = await self._label_owner(principal, group_id)
        label_id = new_id("lbl")
        labels, _ = await self.labels.execute(
            f"labels_{owner}",
            lambda ls: ls.add(kind, owner, label_id, text, principal.sub),
            actor_of(principal),
        )
        return {
            "label_id": label_id,
            "text": labels.items[label_id].text,
            "scope": kind,
            "group_id": group_id,
        }

    async def remove_label(self, principal: AccessClaims, label_id: str) -> None:
        """From my own list, or from the list of a group I am a member of."""
        found = [x for x in await self.list_labels(principal) if x["label_id"] == label_id]
        if found:
            scope, owner = found[0]["scope"], found[0]["group_id"] or principal.sub
            await self.labels.execute(
                f"labels_{owner}",
                lambda ls: ls.remove(scope, owner, label_id, principal.sub),
                actor_of(principal),
            )
            return
        raise rules.LabelNotFound(f"no label {label_id} in your lists nor your groups' lists")

    async def share_preferences(self, principal: AccessClaims) -> SharePreferences:
        return await self.preferences.get(f"pref_{principal.sub}")


def newest_first(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bucket views without duplicates, the latest shared first."""
    unique = {d["_id"]: d for d in docs}.values()
    return sorted(
        unique, key=lambda d: (d["shared_at"] is not None, d["shared_at"] or 0), reverse=True
    )


def resolve_recipients(
    inputs: Sequence[RecipientInput], known: dict[str, dict[str, dict[str, Any]]]
) -> tuple[RecipientRef, ...]:
    """The recipients as references, refusing unknown or inactive users, groups, departments."""
    resolved: dict[tuple[str, str], RecipientRef] = {}
    for r in inputs:
        if r.kind == "email":
            if not r.email:
                raise rules.RecipientNotKnown("an email recipient needs an email address")
            email = r.email.strip().lower()
            ref = RecipientRef(
                recipient_id=f"email:{email}", kind="email", email=email, language=r.language
            )
        else:
            doc = known[r.kind].get(r.id or "")
            if doc is None or doc.get("active") is False:
                raise rules.RecipientNotKnown(f"unknown {r.kind} recipient {r.id!r}")
            # a user's own language; a group's or department's as the client says, else its own
            language = (
                doc.get("language") if r.kind == "user" else r.language or doc.get("language")
            )
            ref = RecipientRef(recipient_id=r.id, kind=r.kind, language=language)  # type: ignore[arg-type]
        resolved.setdefault((ref.kind, ref.recipient_id), ref)
    return tuple(resolved.values())


def pacs_recipients(
    recipients: Sequence[RecipientRef], known: dict[str, dict[str, dict[str, Any]]]
) -> tuple[str, ...]:
    """The department recipients of kind pacs (a share forwards the studies to them)."""
    return tuple(
        r.recipient_id
        for r in recipients
        if r.kind == "department"
        and known["department"].get(r.recipient_id, {}).get("kind") == "pacs"
    )


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
    """The studies of a bucket as its confirmation names them (initials hidden when
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


def confirmation_of(
    bucket: Bucket,
    studies: dict[str, dict[str, Any]],
    known: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, Any]:
    """The confirmation from the directory entries already read (studies, and users, groups,
    departments by kind, including the sender)."""
    s = bucket.s
    names = names_of(known)
    notes = []
    if s.anonymize and s.access_level != "images":
        notes.append("Anonymized: the report is never accessible, whatever the access level.")
    if s.two_factor:
        notes.append("Two-factor: recipients must enter a code sent by SMS before access.")
    if not s.send_mail:
        notes.append("No e-mail is sent to the recipients.")
    return {
        "bucket_id": bucket.id,
        "parent_bucket_id": s.parent_bucket_id,
        "sender": {"id": s.sender_id, "name": names.get(s.sender_id)},
        "studies": study_lines(s.study_uids, studies, s.anonymize),
        "recipients": [
            {
                "id": r.recipient_id,
                "kind": r.kind,
                "name": names.get(r.recipient_id) or r.email,
                "language": r.language,
            }
            for r in s.recipients
        ],
        **share_options(bucket),
        "notes": notes,
    }


def confirmation_text(c: dict[str, Any]) -> str:
    """The confirmation as ready-to-copy text."""
    until = "unlimited" if c["unlimited"] else f"{c['valid_until']:%d/%m/%Y %H:%M} UTC"
    lines = [
        f"Shared by {c['sender']['name'] or c['sender']['id']} (bucket {c['bucket_id']})",
        "",
        "Studies:",
    ]
    for s in c["studies"]:
        bits = [b for b in (s["patient_initials"], s["description"], s["study_date"]) if b]
        lines.append(f"  - {' | '.join(bits) or s['study_uid']} ({s['study_uid']})")
    lines.append("Recipients:")
    for r in c["recipients"]:
        lines.append(f"  - {r['name'] or r['id']} ({r['kind']})")
    level = {
        "images": "images only",
        "images_report_read": "images and read access to the report",
        "images_report_write": "images and write access to the report",
    }[c["access_level"]]
    lines += ["", f"Access: {level}", f"Valid until: {until}"]
    options = [
        name
        for name, on in (
            ("urgent", c["urgent"]),
            ("anonymized", c["anonymize"]),
            ("further sharing allowed", c["allow_further_sharing"]),
            ("download allowed", c["allow_download"]),
            ("two-factor", c["two_factor"]),
            ("e-mail sent", c["send_mail"]),
        )
        if on
    ]
    if options:
        lines.append(f"Options: {', '.join(options)}")
    if c["label"]:
        lines.append(f"Label: {c['label']['text']} ({c['label']['scope']})")
    if c["message"]:
        lines.append(f"Message: {c['message']}")
    lines += c["notes"]
    return "\n".join(lines)
