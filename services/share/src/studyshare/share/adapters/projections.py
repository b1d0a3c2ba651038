"""Read models the worker builds from other services' events (never HTTP). (The bucket read
model has one writer, the `Bucket` repository; the worker's reaction to membership changes is
the service layer's: `service_layer.reactions`.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo import UpdateOne

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry
from studyshare.plumbing.projection import Projection, ProjectionContext

DIRECTORY = "directory"


class Directory(Projection):
    """Users (language, mobile, departments), groups (members), departments (policy, country),
    studies (department, owner, upload batch) and which studies a user has opened."""

    name = DIRECTORY
    topics = ("identity.events", "study.events")
    collections = ("users", "groups", "departments", "studies", "opened")

    async def setup(self, ctx: ProjectionContext) -> None:
        await ctx.collection("groups").create_index("member_ids")
        await ctx.collection("studies").create_index("upload_batch_id")

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        writes: dict[str, list[UpdateOne]] = {c: [] for c in self.collections}
        for envelope in events:
            e = registry.payload(envelope)
            if e is None:
                continue
            for collection, op in self._ops(envelope.event_type, e, envelope.occurred_at):
                writes[collection].append(op)
        for collection, ops in writes.items():
            if ops:
                await ctx.collection(collection).bulk_write(ops, ordered=True, session=ctx.session)

    @staticmethod
    def _ops(kind: str, e, at: datetime) -> list[tuple[str, UpdateOne]]:
        def up(collection: str, _id: str, update: dict) -> tuple[str, UpdateOne]:
            return collection, UpdateOne({"_id": _id}, update, upsert=True)

        if kind == "UserRegistered":
            return [
                up(
                    "users",
                    e.user_id,
                    {
                        "$set": {
                            "first_name": e.first_name,
                            "last_name": e.last_name,
                            "language": e.language,
                            "mobile": e.mobile,
                            "email": e.email,
                            "department_ids": list(e.department_ids),
                            "admin_of": list(e.admin_of),
                            "active": True,
                        }
                    },
                )
            ]
        if kind == "UserProfileChanged":
            fields = {
                k: getattr(e, k)
                for k in ("first_name", "last_name", "language", "mobile", "email")
                if getattr(e, k) is not None
            }
            if e.mobile is not None:  # a new second factor (`two_factor`: a hold before use)
                fields["mobile_changed_at"] = at
            return [up("users", e.user_id, {"$set": fields})] if fields else []
        if kind == "UserRolesChanged":
            return [
                up(
                    "users",
                    e.user_id,
                    {
                        "$set": {
                            "department_ids": list(e.department_ids),
                            "admin_of": list(e.admin_of),
                        }
                    },
                )
            ]
        if kind == "UserDeactivated":
            return [up("users", e.user_id, {"$set": {"active": False}})]
        if kind == "GroupCreated":
            members = list(dict.fromkeys([e.primary_contact_id, *e.admin_ids, *e.member_ids]))
            fields = {"name": e.name, "member_ids": members, "language": e.language}
            return [up("groups", e.group_id, {"$set": fields})]
        if kind == "GroupMemberAdded":
            return [up("groups", e.group_id, {"$addToSet": {"member_ids": e.user_id}})]
        if kind == "GroupMemberRemoved":
            return [up("groups", e.group_id, {"$pull": {"member_ids": e.user_id}})]
        if kind == "DepartmentCreated":
            return [
                up(
                    "departments",
                    e.department_id,
                    {
                        "$set": {
                            "name": e.name,
                            "country": e.country,
                            "kind": e.kind,
                            "language": e.language,
                        }
                    },
                )
            ]
        if kind == "DepartmentPolicySet":
            return [
                up(
                    "departments",
                    e.department_id,
                    {
                        "$set": {
                            "policy": {
                                "default_validity_days": e.default_validity_days,
                                "default_validity_months": e.default_validity_months,
                                "time_zone": e.time_zone,
                                "max_validity_days": e.max_validity_days,
                                "unlimited_allowed": e.unlimited_allowed,
                                "hipaa_confirmation_required": e.hipaa_confirmation_required,
                            }
                        }
                    },
                )
            ]
        if kind == "StudyReceived":
            return [
                up(
                    "studies",
                    e.study_uid,
                    {
                        "$set": {
                            "department_id": e.department_id,
                            "owner_id": e.owner_id,
                            "upload_batch_id": e.upload_batch_id,
                            "description": e.description,
                            "patient_initials": e.patient_initials,
                            "study_date": e.study_date.isoformat() if e.study_date else None,
                            "modalities": list(e.modalities),
                        }
                    },
                )
            ]
        opened = kind == "StudyFirstOpened" or (  # at once; the minute's accesses later
            kind == "StudyAccessed" and e.user_id and e.action in ("view", "metadata", "instances")
        )
        if opened:
            return [
                up(
                    "opened",
                    f"{e.user_id}|{e.study_uid}",
                    {"$set": {"user_id": e.user_id, "study_uid": e.study_uid}},
                )
            ]
        return []
