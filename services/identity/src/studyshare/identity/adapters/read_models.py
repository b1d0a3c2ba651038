"""Identity's read models of its own events, updated inline in the command's transaction.

Collections: `users`, `groups`, `memberships` (one per group member, with the confirmation
dates), `invitations` (one per open invitation to a group), `departments` and `recipients` (the
search index of the share dialog).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry
from studyshare.identity.domain.search import named_terms, user_terms
from studyshare.plumbing.errors import snake

USERS, GROUPS, MEMBERSHIPS, INVITATIONS, DEPARTMENTS, RECIPIENTS = (
    "users",
    "groups",
    "memberships",
    "invitations",
    "departments",
    "recipients",
)


async def ensure_indexes(db: AsyncDatabase) -> None:
    await db[USERS].create_index("username_lower", unique=True, name="username")
    await db[USERS].create_index([("status", ASCENDING)], name="by_status")
    await db[MEMBERSHIPS].create_index([("user_id", ASCENDING)], name="by_user")
    await db[MEMBERSHIPS].create_index([("confirmed_until", ASCENDING)], name="by_confirmed_until")
    await db[INVITATIONS].create_index([("user_id", ASCENDING)], name="by_user")
    await db[INVITATIONS].create_index([("group_id", ASCENDING)], name="by_group")
    await db[RECIPIENTS].create_index(
        [("terms", ASCENDING), ("kind_key", ASCENDING)], name="terms_kind"
    )
    await db[RECIPIENTS].create_index(
        [("kind_key", ASCENDING), ("sort_name", ASCENDING)], name="browse"
    )


class ReadModels:
    """Applies identity events to the read models (inline, same session as the append)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db

    async def user(self, user_id: str) -> dict[str, Any] | None:
        return await self.db[USERS].find_one({"_id": user_id})

    async def apply(
        self, envelopes: Sequence[EventEnvelope], session: AsyncClientSession | None = None
    ) -> None:
        for envelope in envelopes:
            payload = registry.payload(envelope)
            handler = getattr(self, f"_{snake(envelope.event_type)}", None)
            if payload is not None and handler is not None:
                await handler(payload, envelope, session)

    # users
    async def _user_registered(self, e: Any, env: EventEnvelope, s: AsyncClientSession) -> None:
        doc = e.model_dump(mode="python")
        doc.pop("user_id")
        doc["_id"] = e.user_id
        doc["username_lower"] = e.username.casefold()
        doc["status"] = "pending" if e.pending_approval else "active"
        doc["totp_enabled"] = False
        doc["registered_at"] = env.occurred_at
        await self.db[USERS].insert_one(doc, session=s)
        await self._index_user(e.user_id, s)

    async def _user_approved(self, e: Any, env: EventEnvelope, s: AsyncClientSession) -> None:
        await self._set_user(e.user_id, {"status": "active", "pending_approval": False}, s)

    async def _user_profile_changed(self, e: Any, env, s) -> None:
        changes = {
            k: v
            for k, v in e.model_dump(mode="python", exclude={"user_id"}).items()
            if v is not None
        }
        await self._set_user(e.user_id, changes, s)

    async def _user_roles_changed(self, e: Any, env, s) -> None:
        await self._set_user(
            e.user_id,
            {
                "roles": list(e.roles),
                "department_ids": list(e.department_ids),
                "admin_of": list(e.admin_of),
            },
            s,
        )

    async def _user_deactivated(self, e: Any, env, s) -> None:
        await self._set_user(e.user_id, {"status": "deactivated"}, s)

    async def _t_o_t_p_enabled(self, e: Any, env, s) -> None:
        await self._set_user(e.user_id, {"totp_enabled": True}, s)

    async def _t_o_t_p_disabled(self, e: Any, env, s) -> None:
        await self._set_user(e.user_id, {"totp_enabled": False}, s)

    async def _set_user(self, user_id: str, changes: dict[str, Any], s) -> None:
        await self.db[USERS].update_one({"_id": user_id}, {"$set": changes}, session=s)
        await self._index_user(user_id, s)

    async def _index_user(self, user_id: str, s) -> None:
        user = await self.db[USERS].find_one({"_id": user_id}, session=s)
        if user is None or user["status"] != "active":
            await self.db[RECIPIENTS].delete_one({"_id": user_id}, session=s)
            return
        numbers = [p["number"] for p in user.get("physician_numbers") or ()]
        doc = {
            "kind": "user",
            "kind_key": "user",
            "name": f"{user['first_name']} {user['last_name']}",
            "sort_name": f"{user['last_name']} {user['first_name']}".casefold(),
            "subtitle": ", ".join(
                f"{p['registry']} {p['number']}" for p in user.get("physician_numbers") or ()
            )
            or None,
            "environment": user.get("environment"),
            "language": user.get("language"),
            "terms": user_terms(
                first_name=user["first_name"],
                last_name=user["last_name"],
                physician_numbers=numbers,
                registries=[p["registry"] for p in user.get("physician_numbers") or ()],
                email=user.get("email"),
                email_public=bool(user.get("email_public")),
                mobile=user.get("mobile"),
                mobile_public=bool(user.get("mobile_public")),
            ),
        }
        await self.db[RECIPIENTS].replace_one({"_id": user_id}, doc, upsert=True, session=s)

    # groups
    async def _group_created(self, e: Any, env: EventEnvelope, s) -> None:
        await self.db[GROUPS].insert_one(
            {
                "_id": e.group_id,
                "name": e.name,
                "primary_contact_id": e.primary_contact_id,
                "email": e.email,
                "members": [],
                "created_by": e.created_by,
                "created_at": env.occurred_at,
            },
            session=s,
        )
        await self.db[RECIPIENTS].replace_one(
            {"_id": e.group_id},
            {
                "kind": "group",
                "kind_key": "group",
                "name": e.name,
                "sort_name": e.name.casefold(),
                "subtitle": None,
                "terms": named_terms(e.name),
            },
            upsert=True,
            session=s,
        )

    async def _group_member_invited(self, e: Any, env: EventEnvelope, s) -> None:
        await self.db[INVITATIONS].replace_one(
            {"_id": f"{e.group_id}:{e.user_id}"},
            {
                "group_id": e.group_id,
                "user_id": e.user_id,
                "admin": e.admin,
                "invited_by": e.invited_by,
                "invited_at": env.occurred_at,
            },
            upsert=True,
            session=s,
        )

    async def _group_invitation_declined(self, e: Any, env: EventEnvelope, s) -> None:
        await self.db[INVITATIONS].delete_one({"_id": f"{e.group_id}:{e.user_id}"}, session=s)

    async def _group_invitation_withdrawn(self, e: Any, env: EventEnvelope, s) -> None:
        await self.db[INVITATIONS].delete_one({"_id": f"{e.group_id}:{e.user_id}"}, session=s)

    async def _group_member_added(self, e: Any, env: EventEnvelope, s) -> None:
        await self.db[INVITATIONS].delete_one({"_id": f"{e.group_id}:{e.user_id}"}, session=s)
        await self.db[GROUPS].update_one(
            {"_id": e.group_id},
            {"$push": {"members": {"user_id": e.user_id, "admin": e.admin}}},
            session=s,
        )
        await self.db[MEMBERSHIPS].replace_one(
            {"_id": f"{e.group_id}:{e.user_id}"},
            {
                "group_id": e.group_id,
                "user_id": e.user_id,
                "admin": e.admin,
                "joined_at": env.occurred_at,
                "confirmed_until": env.occurred_at,
                "reminded_for": None,
            },
            upsert=True,
            session=s,
        )

    async def _group_member_removed(self, e: Any, env, s) -> None:
        await self.db[GROUPS].update_one(
            {"_id": e.group_id}, {"$pull": {"members": {"user_id": e.user_id}}}, session=s
        )
        await self.db[MEMBERSHIPS].delete_one({"_id": f"{e.group_id}:{e.user_id}"}, session=s)

    async def _group_admin_changed(self, e: Any, env, s) -> None:
        group = await self.db[GROUPS].find_one({"_id": e.group_id}, session=s)
        if group is None:
            return
        members = [
            {**m, "admin": e.admin} if m["user_id"] == e.user_id else m for m in group["members"]
        ]
        await self.db[GROUPS].update_one(
            {"_id": e.group_id}, {"$set": {"members": members}}, session=s
        )
        await self.db[MEMBERSHIPS].update_one(
            {"_id": f"{e.group_id}:{e.user_id}"}, {"$set": {"admin": e.admin}}, session=s
        )

    async def _group_primary_contact_changed(self, e: Any, env, s) -> None:
        await self.db[GROUPS].update_one(
            {"_id": e.group_id}, {"$set": {"primary_contact_id": e.primary_contact_id}}, session=s
        )

    async def _group_membership_confirmed(self, e: Any, env, s) -> None:
        await self.db[MEMBERSHIPS].update_one(
            {"_id": f"{e.group_id}:{e.user_id}"},
            {
                "$set": {
                    "confirmed_until": e.confirmed_until,
                    "confirmed_at": env.occurred_at,
                    "lapsed": False,
                }
            },
            session=s,
        )

    async def _group_membership_confirmation_due(self, e: Any, env, s) -> None:
        await self.db[MEMBERSHIPS].update_one(
            {"_id": f"{e.group_id}:{e.user_id}"},
            {"$set": {"reminded_for": e.due_since}},
            session=s,
        )

    async def _group_membership_lapsed(self, e: Any, env, s) -> None:
        await self.db[MEMBERSHIPS].update_one(
            {"_id": f"{e.group_id}:{e.user_id}"},
            {"$set": {"lapsed": True, "lapsed_for": e.due_since}},
            session=s,
        )

    # departments
    async def _department_created(self, e: Any, env: EventEnvelope, s) -> None:
        doc = e.model_dump(mode="python")
        doc["_id"] = doc.pop("department_id")
        doc["admin_ids"] = []
        doc["created_at"] = env.occurred_at
        await self.db[DEPARTMENTS].insert_one(doc, session=s)
        searchable = [e.name] + ([e.pacs.ae_title] if e.pacs else [])
        await self.db[RECIPIENTS].replace_one(
            {"_id": e.department_id},
            {
                "kind": "department",
                "kind_key": "pacs" if e.kind == "pacs" else "department",
                "department_kind": e.kind,
                "name": e.name,
                "sort_name": e.name.casefold(),
                "subtitle": f"PACS {e.pacs.ae_title}" if e.pacs else None,
                "environment": e.country,
                "terms": named_terms(e.name, searchable[1:]),
            },
            upsert=True,
            session=s,
        )

    async def _department_policy_set(self, e: Any, env, s) -> None:
        policy = e.model_dump(mode="python", exclude={"department_id", "set_by"})
        if policy.get("default_validity_months") is not None:  # days: a rough equivalent only
            policy["default_validity_days"] = None
        await self.db[DEPARTMENTS].update_one(
            {"_id": e.department_id}, {"$set": {"policy": policy}}, session=s
        )

    async def _department_admin_assigned(self, e: Any, env, s) -> None:
        await self.db[DEPARTMENTS].update_one(
            {"_id": e.department_id}, {"$addToSet": {"admin_ids": e.user_id}}, session=s
        )

    async def _department_admin_removed(self, e: Any, env, s) -> None:
        await self.db[DEPARTMENTS].update_one(
            {"_id": e.department_id}, {"$pull": {"admin_ids": e.user_id}}, session=s
        )
