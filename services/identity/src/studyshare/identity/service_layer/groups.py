"""Group practices: creation, members and admins, and the 3-monthly membership confirmation
(due list, confirm, reminder events)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING

from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.identity.adapters.read_models import GROUPS, MEMBERSHIPS, USERS
from studyshare.identity.domain.exceptions import GroupNotFound, NotAllowed, UserNotFound
from studyshare.identity.domain.group import Group
from studyshare.identity.service_layer.accounts import actor_of
from studyshare.identity.service_layer.context import Identity
from studyshare.plumbing.aggregate import new_id
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)


def _period(app: Identity) -> timedelta:
    return timedelta(days=app.settings.group_confirmation_days)


async def _existing_users(app: Identity, user_ids: list[str]) -> None:
    found = {
        d["_id"]
        async for d in app.db[USERS].find(
            {"_id": {"$in": user_ids}, "status": "active"}, {"_id": 1}
        )
    }
    missing = [u for u in user_ids if u not in found]
    if missing:
        raise UserNotFound(f"no active user {', '.join(missing)}")


async def create_group(
    app: Identity,
    principal: AccessClaims,
    ip: str | None,
    *,
    name: str,
    primary_contact_id: str | None,
    admin_ids: list[str],
    member_ids: list[str],
    email: str | None,
) -> str:
    """Any physician may found a group practice (and is its primary contact unless the service
    desk names another)."""
    if principal.kind != "user":
        raise NotAllowed("only registered users create groups")
    primary = primary_contact_id or principal.sub
    if primary != principal.sub and not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk names someone else as primary contact")
    await _existing_users(app, list(dict.fromkeys([primary, *admin_ids, *member_ids])))
    group_id = new_id("grp")
    now = app.clock()
    period = _period(app)

    def decide(group: Group) -> list:
        return Group.create(
            group_id,
            name=name,
            primary_contact_id=primary,
            admin_ids=tuple(admin_ids),
            member_ids=tuple(member_ids),
            email=email,
            created_by=principal.sub,
            now=now,
            period=period,
        )

    await app.execute(Group, group_id, decide, actor_of(principal, ip))
    return group_id


async def add_member(
    app: Identity, group_id: str, user_id: str, admin: bool, principal: AccessClaims, ip
) -> None:
    await _existing_users(app, [user_id])
    now = app.clock()
    period = _period(app)

    def decide(group: Group) -> list:
        group.period = period
        return group.add_member(
            user_id,
            admin=admin,
            by=principal.sub,
            service_desk=principal.has_role("service_desk"),
            now=now,
        )

    await app.execute(Group, group_id, decide, actor_of(principal, ip))


async def remove_member(
    app: Identity, group_id: str, user_id: str, principal: AccessClaims, ip
) -> None:
    await app.execute(
        Group,
        group_id,
        lambda g: g.remove_member(
            user_id, by=principal.sub, service_desk=principal.has_role("service_desk")
        ),
        actor_of(principal, ip),
    )


async def set_admin(
    app: Identity, group_id: str, user_id: str, admin: bool, principal: AccessClaims, ip
) -> None:
    await app.execute(
        Group,
        group_id,
        lambda g: g.set_admin(
            user_id, admin, by=principal.sub, service_desk=principal.has_role("service_desk")
        ),
        actor_of(principal, ip),
    )


async def set_primary_contact(
    app: Identity, group_id: str, user_id: str, principal: AccessClaims, ip
) -> None:
    await app.execute(
        Group,
        group_id,
        lambda g: g.set_primary_contact(
            user_id, by=principal.sub, service_desk=principal.has_role("service_desk")
        ),
        actor_of(principal, ip),
    )


async def confirm_membership(app: Identity, group_id: str, principal: AccessClaims, ip) -> datetime:
    now = app.clock()
    period = _period(app)

    def decide(group: Group) -> list:
        group.period = period
        return group.confirm_membership(principal.sub, now)

    _, envelopes = await app.execute(Group, group_id, decide, actor_of(principal, ip))
    return envelopes[0].payload["confirmed_until"]


async def group_view(app: Identity, group_id: str) -> dict[str, Any]:
    """The composition as the manual shows it: primary contact on top, admins flagged."""
    group = await app.db[GROUPS].find_one({"_id": group_id})
    if group is None:
        raise GroupNotFound(f"group {group_id} does not exist")
    ids = [m["user_id"] for m in group["members"]]
    users = {
        u["_id"]: u
        async for u in app.db[USERS].find(
            {"_id": {"$in": ids}}, {"first_name": 1, "last_name": 1, "physician_numbers": 1}
        )
    }
    members = [
        {
            "user_id": m["user_id"],
            "first_name": users.get(m["user_id"], {}).get("first_name", ""),
            "last_name": users.get(m["user_id"], {}).get("last_name", ""),
            "admin": m["admin"],
            "primary_contact": m["user_id"] == group["primary_contact_id"],
        }
        for m in group["members"]
    ]
    members.sort(key=lambda m: (not m["primary_contact"], not m["admin"], m["last_name"]))
    return {
        "group_id": group["_id"],
        "name": group["name"],
        "email": group.get("email"),
        "primary_contact_id": group["primary_contact_id"],
        "members": members,
    }


async def confirmations(app: Identity, user_id: str) -> list[dict[str, Any]]:
    """Every group of the user with its composition and whether confirmation is due."""
    now = app.clock()
    result = []
    async for m in app.db[MEMBERSHIPS].find({"user_id": user_id}).sort("group_id", ASCENDING):
        view = await group_view(app, m["group_id"])
        result.append(
            {
                **view,
                "confirmed_until": m["confirmed_until"],
                "due": m["confirmed_until"] <= now,
            }
        )
    return result


async def emit_due_reminders(app: Identity, now: datetime | None = None) -> int:
    """Emit `GroupMembershipConfirmationDue` once per member per lapsed period. Idempotent: the
    Group aggregate remembers which period it reminded, so running it again (from several
    processes, or every hour) emits nothing new. Run by the worker on a timer."""
    now = now or app.clock()
    cursor = app.db[MEMBERSHIPS].find(
        {"confirmed_until": {"$lte": now}}, {"group_id": 1, "confirmed_until": 1, "reminded_for": 1}
    )
    groups = sorted(
        {m["group_id"] async for m in cursor if m.get("reminded_for") != m["confirmed_until"]}
    )
    emitted = 0
    for group_id in groups:
        _, envelopes = await app.execute(
            Group, group_id, lambda g: g.due_reminders(now), Actor.system("group-reminders")
        )
        emitted += len(envelopes)
    if emitted:
        log.info("group_reminders.emitted", count=emitted)
    return emitted
