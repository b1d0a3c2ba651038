"""The worker's projections: the directory read model, and the reactions that queue messages.

`DirectoryProjection` keeps what notify must know to reach people (names, email, mobile,
language, roles, admin_of), groups, departments, the exam details of studies and the sending
department of buckets. `ReactionsProjection` turns events into delivery records (`pending`), in
the runner's transaction together with its checkpoint; the sender loop delivers them. The
delivery log is not part of a generation: rebuilding a projection must never send again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry
from studyshare.contracts.events.identity import (
    DepartmentAdminAssigned,
    DepartmentAdminRemoved,
    DepartmentCreated,
    GroupCreated,
    GroupMemberAdded,
    GroupMemberRemoved,
    GroupMembershipConfirmed,
    UserDeactivated,
    UserProfileChanged,
    UserRegistered,
    UserRolesChanged,
)
from studyshare.contracts.events.share import StudyShared
from studyshare.contracts.events.study import StudyReceived
from studyshare.notify.adapters.deliveries import DeliveryStore, new_record
from studyshare.notify.adapters.directory import DIRECTORY
from studyshare.notify.domain.reactions import ReactionOptions, reactions
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.projection import Projection, ProjectionContext

log = get_logger(__name__)


class DirectoryProjection(Projection):
    name = DIRECTORY
    topics = ("identity.events", "study.events", "share.events")
    collections = ("users", "groups", "departments", "studies", "buckets")

    async def setup(self, ctx: ProjectionContext) -> None:
        users = ctx.collection("users")
        await users.create_index("admin_of")
        await users.create_index("roles")

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        writes: dict[str, list[UpdateOne]] = {}
        for envelope in events:
            try:
                event = registry.payload(envelope)
            except ValueError:
                # skipping beats blocking the partition forever; the event id is in the log
                log.error(
                    "event.unreadable",
                    projection=self.name,
                    event_type=envelope.event_type,
                    event_id=str(envelope.event_id),
                )
                continue
            for collection, op in _directory_updates(event):
                writes.setdefault(collection, []).append(op)
        for collection, ops in writes.items():
            await ctx.collection(collection).bulk_write(ops, ordered=True, session=ctx.session)


def _directory_updates(event: Any) -> list[tuple[str, UpdateOne]]:
    match event:
        case UserRegistered():
            fields = {
                "first_name": event.first_name,
                "last_name": event.last_name,
                "email": event.email,
                "mobile": event.mobile,
                "language": event.language,
                "roles": list(event.roles),
                "department_ids": list(event.department_ids),
                "active": True,
            }
            # merged, not set: a DepartmentAdminAssigned (another aggregate, maybe another
            # partition) may have been applied before this registration
            update = {"$set": fields, "$addToSet": {"admin_of": {"$each": list(event.admin_of)}}}
            return [("users", UpdateOne({"_id": event.user_id}, update, upsert=True))]
        case UserProfileChanged():
            changed = {
                k: getattr(event, k)
                for k in ("first_name", "last_name", "email", "mobile", "language")
                if getattr(event, k) is not None
            }
            if not changed:
                return []
            return [("users", UpdateOne({"_id": event.user_id}, {"$set": changed}, upsert=True))]
        case UserRolesChanged():
            fields = {
                "roles": list(event.roles),
                "department_ids": list(event.department_ids),
                "admin_of": list(event.admin_of),
            }
            return [("users", UpdateOne({"_id": event.user_id}, {"$set": fields}, upsert=True))]
        case DepartmentAdminAssigned():
            op = UpdateOne(
                {"_id": event.user_id},
                {"$addToSet": {"admin_of": event.department_id}},
                upsert=True,
            )
            return [("users", op)]
        case DepartmentAdminRemoved():  # else a replay could bring back an admin's assignment
            op = UpdateOne({"_id": event.user_id}, {"$pull": {"admin_of": event.department_id}})
            return [("users", op)]
        case UserDeactivated():
            return [("users", UpdateOne({"_id": event.user_id}, {"$set": {"active": False}}))]
        case GroupCreated():
            members = list(
                dict.fromkeys([event.primary_contact_id, *event.member_ids, *event.admin_ids])
            )
            fields = {"name": event.name, "email": event.email, "member_ids": members}
            return [("groups", UpdateOne({"_id": event.group_id}, {"$set": fields}, upsert=True))]
        case GroupMemberAdded():
            op = UpdateOne(
                {"_id": event.group_id}, {"$addToSet": {"member_ids": event.user_id}}, upsert=True
            )
            return [("groups", op)]
        case GroupMemberRemoved():
            op = UpdateOne({"_id": event.group_id}, {"$pull": {"member_ids": event.user_id}})
            return [("groups", op)]
        case GroupMembershipConfirmed():
            confirmed = {f"confirmed_until.{event.user_id}": event.confirmed_until}
            op = UpdateOne({"_id": event.group_id}, {"$set": confirmed}, upsert=True)
            return [("groups", op)]
        case DepartmentCreated():
            fields = {"name": event.name, "email": event.email, "kind": event.kind}
            op = UpdateOne({"_id": event.department_id}, {"$set": fields}, upsert=True)
            return [("departments", op)]
        case StudyReceived():
            fields = {
                "patient_initials": event.patient_initials,
                "description": event.description,
                "study_date": event.study_date.isoformat() if event.study_date else None,
                "department_id": event.department_id,
            }
            return [("studies", UpdateOne({"_id": event.study_uid}, {"$set": fields}, upsert=True))]
        case StudyShared():
            fields = {
                "sender_id": event.sender_id,
                "sending_department_id": event.sending_department_id,
            }
            return [("buckets", UpdateOne({"_id": event.bucket_id}, {"$set": fields}, upsert=True))]
    return []


class ReactionsProjection(Projection):
    """Queues the messages each event asks for; the sender loop delivers them."""

    name = "reactions"
    topics = ("share.events", "identity.events", "study.events")

    def __init__(
        self,
        options: ReactionOptions | None = None,
        max_age: timedelta = timedelta(days=2),
    ) -> None:
        self.options = options or ReactionOptions()
        self.max_age = max_age

    async def setup(self, ctx: ProjectionContext) -> None:
        await DeliveryStore(ctx.db).ensure_indexes()

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        now = datetime.now(UTC)
        docs = []
        for envelope in events:
            intents = reactions(envelope, self.options)
            if not intents:
                continue
            if now - envelope.occurred_at > self.max_age:
                log.info(
                    "notification.stale_cause_ignored",
                    event_type=envelope.event_type,
                    event_id=str(envelope.event_id),
                )
                continue
            docs.extend(
                new_record(
                    intent,
                    now=now,
                    cause_occurred_at=envelope.occurred_at,
                    correlation_id=envelope.correlation_id,
                )
                for intent in intents
            )
        await DeliveryStore(ctx.db).add(docs, session=ctx.session)
        for doc in docs:
            log.info(
                "notification.queued",
                notification_id=doc["_id"],
                cause_event_type=doc["cause_event_type"],
                template=doc["template"],
                kind=doc["kind"],
            )
