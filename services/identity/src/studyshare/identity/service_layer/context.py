"""What every command handler needs, built once per process, and the unit of work that
appends events and updates the read models in one MongoDB transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import DomainEvent
from studyshare.identity.adapters import read_models, stores
from studyshare.identity.adapters.passwords import Passwords
from studyshare.identity.adapters.read_models import ReadModels
from studyshare.identity.adapters.session_ends import SESSION_FOLLOWERS, SessionEnds
from studyshare.identity.adapters.stores import (
    Credentials,
    ExternalIdentities,
    ExternalLogins,
    MobileChanges,
    PatientOTPs,
    Sessions,
    SigningKeys,
    Throttle,
)
from studyshare.identity.domain.lockout import LockoutPolicy
from studyshare.identity.settings import IdentitySettings
from studyshare.plumbing import propagation
from studyshare.plumbing.access_barrier import AccessBarrierClient
from studyshare.plumbing.aggregate import Events, Repository
from studyshare.plumbing.domain import Aggregate
from studyshare.plumbing.eventstore import EventStore, envelope_for
from studyshare.plumbing.followers import FollowerRegistry
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.revocations import ending_of
from studyshare.plumbing.tokens import TokenSigner

log = get_logger(__name__)

#: identity events that may narrow who opens which study in the study store's access model
#: (a member leaving a group, a user leaving a department or losing a role, a stricter
#: break-the-glass policy, a deactivated account): their command answers once every
#: study-store API process decides on them (`plumbing.access_barrier`)
NARROWS_STUDY_ACCESS = frozenset(
    {"GroupMemberRemoved", "UserRolesChanged", "UserDeactivated", "DepartmentPolicySet"}
)

A = TypeVar("A", bound=Aggregate)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Identity:
    """The identity service's state: stores, keys, policies and a clock (tests replace it).

    The stores are MongoDB's (`db`) but for those given: handler tests without a database
    pass `db=None` and in-memory ones (an event store from `plumbing.fakes`, ...)."""

    db: AsyncDatabase | None
    settings: IdentitySettings
    signer: TokenSigner
    passwords: Passwords
    clock: Callable[[], datetime] = utcnow
    store: EventStore | Events = None  # type: ignore[assignment]
    read_models: ReadModels = None  # type: ignore[assignment]
    credentials: Credentials = None  # type: ignore[assignment]
    sessions: Sessions = None  # type: ignore[assignment]
    throttle: Throttle = None  # type: ignore[assignment]
    patient_otps: PatientOTPs = None  # type: ignore[assignment]
    mobile_changes: MobileChanges = None  # type: ignore[assignment]
    external: ExternalIdentities = None  # type: ignore[assignment]
    external_logins: ExternalLogins = None  # type: ignore[assignment]
    session_ends: SessionEnds = None  # type: ignore[assignment]
    session_followers: FollowerRegistry = None  # type: ignore[assignment]
    access_barrier: AccessBarrierClient | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        db = self.db
        if db is None:
            return  # only the stores given
        self.store = self.store or EventStore(db)
        self.read_models = self.read_models or ReadModels(db)
        self.credentials = self.credentials or Credentials(db)
        self.sessions = self.sessions or Sessions(db)
        self.throttle = self.throttle or Throttle(db)
        self.patient_otps = self.patient_otps or PatientOTPs(db)
        self.mobile_changes = self.mobile_changes or MobileChanges(db)
        self.external = self.external or ExternalIdentities(db)
        self.external_logins = self.external_logins or ExternalLogins(db)
        self.session_ends = self.session_ends or SessionEnds(
            db, keep_s=self.settings.session_revocation_keep_s
        )
        self.session_followers = self.session_followers or FollowerRegistry(
            db[SESSION_FOLLOWERS], clock_skew_s=self.settings.follower_clock_skew_s
        )

    @classmethod
    async def start(
        cls,
        db: AsyncDatabase,
        settings: IdentitySettings,
        *,
        signing: bool = True,
        **overrides: Any,
    ) -> Identity:
        """Indexes and the signing key (from settings, or in development the persisted one).
        Processes that never sign (the worker) pass `signing=False`."""
        await EventStore(db).ensure_indexes()
        await read_models.ensure_indexes(db)
        await stores.ensure_indexes(db)
        await SessionEnds(db).ensure_indexes()
        if settings.signing_key_pem and settings.signing_key_id:
            signer = TokenSigner.from_pem(settings.signing_key_pem, settings.signing_key_id)
        elif not signing:
            signer = TokenSigner(kid="never-published")
        else:
            settings.check_signing_key()
            signer = await SigningKeys(db).development_signer()
        passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)
        return cls(db=db, settings=settings, signer=signer, passwords=passwords, **overrides)

    # policies
    @property
    def account_lockout(self) -> LockoutPolicy:
        s = self.settings
        return LockoutPolicy(
            s.account_lock_threshold, s.lock_base_s, s.lock_max_s, s.failure_decay_s
        )

    @property
    def source_lockout(self) -> LockoutPolicy:
        s = self.settings
        return LockoutPolicy(
            s.source_lock_threshold, s.lock_base_s, s.lock_max_s, s.source_window_s
        )

    @property
    def registration_limit(self) -> LockoutPolicy:
        s = self.settings
        return LockoutPolicy(
            s.registrations_per_source, s.lock_base_s * 20, s.lock_max_s, s.registration_window_s
        )

    @property
    def patient_lockout(self) -> LockoutPolicy:
        s = self.settings
        return LockoutPolicy(
            s.patient_lock_threshold, s.lock_base_s, s.lock_max_s, s.failure_decay_s
        )

    def jwks(self) -> dict[str, Any]:
        """The current key and the previous ones (rotation), never twice the same kid."""
        keys = [self.signer.public_jwk()]
        for key in self.settings.previous_jwks.get("keys", []):
            if key.get("kid") not in {k["kid"] for k in keys}:
                keys.append(key)
        return {"keys": keys}

    # writing
    async def execute(
        self,
        cls: type[A],
        aggregate_id: str,
        decide: Callable[[A], list[DomainEvent]],
        actor: Actor,
        *,
        also: Callable[[AsyncClientSession], Awaitable[None]] | None = None,
        retries: int = 8,
    ) -> tuple[A, list[EventEnvelope]]:
        """Load, decide, append and project in one unit of work (retried when another writer
        won); then wait until the followers know what it ended or narrowed."""
        repo = Repository(self.store, cls)

        async def work(session: AsyncClientSession | None) -> tuple[A, list[EventEnvelope]]:
            aggregate, envelopes = await repo.execute(aggregate_id, decide, actor, session=session)
            await self.read_models.apply(envelopes, session)
            if also is not None:
                await also(session)
            return aggregate, envelopes

        aggregate, envelopes = await repo.uow.run(work, retries=retries)
        await asyncio.gather(  # both wait for followers, independently
            self.end_sessions(envelopes), self.narrow_study_access(envelopes)
        )
        return aggregate, envelopes

    async def end_sessions(self, envelopes: list[EventEnvelope]) -> None:
        """After a commit: list the sessions and accounts its events ended, and wait until
        every API process following that list has them (or certainly answers nothing more),
        so the command's answer comes after the last request the ended token got through."""
        endings = [e for e in map(ending_of, envelopes) if e is not None]
        if not endings:
            return
        committed = self.clock().timestamp()  # a token signed while the command ran ends too
        endings = [replace(e, at=max(e.at, committed)) for e in endings]
        seq = await self.session_ends.record(endings)
        outcome = await self.session_followers.wait_for(
            seq, timeout_s=self.settings.session_barrier_timeout_s
        )
        propagation.note(outcome.confirmed)
        line = log.info if outcome.confirmed else log.warning
        line(
            "session_ends.propagated" if outcome.confirmed else "session_ends.not_confirmed",
            seq=seq,
            followers=outcome.followers,
            behind=outcome.behind,
            ms=round(outcome.waited_s * 1000, 1),
        )

    async def narrow_study_access(self, envelopes: list[EventEnvelope]) -> None:
        """After a commit that may narrow access to studies: the study store decides on it
        everywhere before the command answers (without a barrier configured, nothing)."""
        if self.access_barrier is None:
            return
        changed = [e.aggregate_id for e in envelopes if e.event_type in NARROWS_STUDY_ACCESS]
        if changed:
            await self.access_barrier.propagate(changed)

    async def record(self, event: DomainEvent, aggregate_id: str, actor: Actor) -> None:
        """Append the first event of a one-event aggregate (e.g. a login attempt)."""
        await self.store.append(
            [envelope_for(event, aggregate_id=aggregate_id, aggregate_version=1, actor=actor)]
        )
