"""Group practices: creation, invitations (accepted by the invitee or approved by the service
desk), members and admins, and the 3-monthly membership confirmation (due list, confirm,
reminder events)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING

from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.identity.adapters.read_models import GROUPS, INVITATIONS, MEMBERSHIPS, USERS
from studyshare.identity.domain.exceptions import GroupNotFound, NotAllowed, UserNotFound
from studyshare.identity.domain.group import Group
from studyshare.identity.service_layer.accounts import actor_of
from studyshare.identity.service_layer.context import Identity
from studyshare.plumbing.domain import new_id
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
    language: str | None = None,
) -> str:
    """Any physician may found a group practice (and is its primary contact unless the service
    desk names another). Everyone else a founder names is invited, not made a member; whom the
    service desk names is a member at once."""
    if principal.kind != "user":
        raise NotAllowed("only registered users create groups")
    primary = primary_contact_id or principal.sub
    if primary != principal.sub and not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk names someone else as primary contact")
    await _existing_users(app, list(dict.fromkeys([primary, *admin_ids, *member_ids])))
    if language is None:  # the practice speaks its primary contact's language
        contact = await app.db[USERS].find_one({"_id": primary}, {"language": 1})
        language = (contact or {}).get("language")
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
            language=language,
            created_by=principal.sub,
            service_desk=principal.has_role("service_desk"),
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


async def accept_membership(app: Identity, group_id: str, principal: AccessClaims, ip) -> None:
    """The invitee accepts: from now on a member, and a colleague of the other members."""
    now = app.clock()
    period = _period(app)

    def decide(group: Group) -> list:
        group.period = period
        return group.accept_invitation(principal.sub, now)

    await app.execute(Group, group_id, decide, actor_of(principal, ip))


async def decline_membership(app: Identity, group_id: str, principal: AccessClaims, ip) -> None:
    await app.execute(
        Group, group_id, lambda g: g.decline_invitation(principal.sub), actor_of(principal, ip)
    )


async def approve_membership(
    app: Identity, group_id: str, user_id: str, principal: AccessClaims, ip
) -> None:
    """The service desk accepts an invitation on the invitee's behalf."""
    now = app.clock()
    period = _period(app)

    def decide(group: Group) -> list:
        group.period = period
        return group.approve_invitation(
            user_id, by=principal.sub, service_desk=principal.has_role("service_desk"), now=now
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


async def _names(app: Identity, user_ids: list[str]) -> dict[str, dict[str, Any]]:
    return {
        u["_id"]: u
        async for u in app.db[USERS].find(
            {"_id": {"$in": user_ids}}, {"first_name": 1, "last_name": 1}
        )
    }


async def group_view(
    app: Identity, group_id: str, viewer: AccessClaims | None = None
) -> dict[str, Any]:
    """The composition as the manual shows it: primary contact on top, admins flagged. A
    `viewer` must be a member or the service desk (anyone else, an invitee too, is told the
    group does not exist); group admins and the service desk also see the open invitations."""
    group = await app.db[GROUPS].find_one({"_id": group_id})
    if group is None:
        raise GroupNotFound(f"group {group_id} does not exist")
    mine = next((m for m in group["members"] if viewer and m["user_id"] == viewer.sub), None)
    desk = viewer is not None and viewer.has_role("service_desk")
    if viewer is not None and mine is None and not desk:
        raise GroupNotFound(f"group {group_id} does not exist")
    invited = (
        [i async for i in app.db[INVITATIONS].find({"group_id": group_id}).sort("_id")]
        if desk or (mine and mine["admin"])
        else None
    )
    ids = [m["user_id"] for m in group["members"]] + [i["user_id"] for i in invited or ()]
    users = await _names(app, ids)
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
        "invited": None
        if invited is None
        else [
            {
                "user_id": i["user_id"],
                "first_name": users.get(i["user_id"], {}).get("first_name", ""),
                "last_name": users.get(i["user_id"], {}).get("last_name", ""),
                "admin": i["admin"],
                "invited_by": i["invited_by"],
            }
            for i in invited
        ],
    }


async def open_invitations(
    app: Identity, principal: AccessClaims, limit: int = 500
) -> list[dict[str, Any]]:
    """Every open invitation, oldest first, for the service desk to accept on the invitee's
    behalf (`approve_membership`)."""
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk sees every open invitation")
    found = await app.db[INVITATIONS].find({}).sort("invited_at", ASCENDING).to_list(limit)
    groups = {
        g["_id"]: g["name"]
        async for g in app.db[GROUPS].find(
            {"_id": {"$in": [i["group_id"] for i in found]}}, {"name": 1}
        )
    }
    people = await _names(app, [i[k] for i in found for k in ("user_id", "invited_by")])

    def name(user_id: str) -> str:
        person = people.get(user_id, {})
        return " ".join(filter(None, (person.get("first_name"), person.get("last_name"))))

    return [
        {
            "group_id": i["group_id"],
            "group_name": groups.get(i["group_id"], ""),
            "user_id": i["user_id"],
            "user_name": name(i["user_id"]),
            "admin": i["admin"],
            "invited_by": i["invited_by"],
            "invited_by_name": name(i["invited_by"]),
            "invited_at": i["invited_at"],
        }
        for i in found
    ]


async def invitations(app: Identity, user_id: str) -> list[dict[str, Any]]:
    """The user's open invitations: which group, who asked, as admin or not. Not the group's
    composition: that is for members."""
    found = [
        i async for i in app.db[INVITATIONS].find({"user_id": user_id}).sort("group_id", ASCENDING)
    ]
    groups = {
        g["_id"]: g["name"]
        async for g in app.db[GROUPS].find(
            {"_id": {"$in": [i["group_id"] for i in found]}}, {"name": 1}
        )
    }
    inviters = await _names(app, [i["invited_by"] for i in found])
    return [
        {
            "group_id": i["group_id"],
            "group_name": groups.get(i["group_id"], ""),
            "admin": i["admin"],
            "invited_by": i["invited_by"],
            "invited_by_name": " ".join(
                filter(
                    None,
                    (
                        inviters.get(i["invited_by"], {}).get("first_name"),
                        inviters.get(i["invited_by"], {}).get("last_name"),
                    ),
                )
            ),
            "invited_at": i["invited_at"],
        }
        for i in found
    ]


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
                "lapsed": bool(m.get("lapsed")),
            }
        )
    return result


def _grace(app: Identity) -> timedelta:
    return timedelta(days=app.settings.group_confirmation_grace_days)


async def emit_due_reminders(app: Identity, now: datetime | None = None) -> int:
    """Emit `GroupMembershipConfirmationDue` once per member per lapsed period, and
    `GroupMembershipLapsed` once the grace period after it passed unconfirmed. Idempotent: the
    Group aggregate remembers which period it reminded of and which lapsed, so running it again
    (from several processes, or every hour) emits nothing new. Run by the worker on a timer."""
    now = now or app.clock()
    grace = _grace(app)
    cursor = app.db[MEMBERSHIPS].find(
        {"confirmed_until": {"$lte": now}},
        {"group_id": 1, "confirmed_until": 1, "reminded_for": 1, "lapsed_for": 1},
    )
    groups = sorted(
        {
            m["group_id"]
            async for m in cursor
            if m.get("reminded_for") != m["confirmed_until"]
            or (m["confirmed_until"] + grace <= now and m.get("lapsed_for") != m["confirmed_until"])
        }
    )
    emitted = 0
    for group_id in groups:
        _, envelopes = await app.execute(
            Group,
            group_id,
            lambda g: g.due_reminders(now) + g.lapses(now, grace),
            Actor.system("group-reminders"),
        )
        emitted += len(envelopes)
    if emitted:
        log.info("group_reminders.emitted", count=emitted)
    return emitted


async def due_group_ids(app: Identity, user_id: str) -> list[str]:
    """The groups whose confirmation the user owes (asked at login)."""
    now = app.clock()
    return [
        m["group_id"]
        async for m in app.db[MEMBERSHIPS]
        .find({"user_id": user_id, "confirmed_until": {"$lte": now}}, {"group_id": 1})
        .sort("group_id", ASCENDING)
    ]


async def report_composition(
    app: Identity, group_id: str, remark: str, principal: AccessClaims, ip
) -> list[str]:
    """ "Report a wrong composition": the group's admins are told (notify mails them), or the
    service desk when the reporter is the only admin. Answers who is told (admin ids)."""
    _, envelopes = await app.execute(
        Group,
        group_id,
        lambda g: g.report_composition(principal.sub, remark),
        actor_of(principal, ip),
    )
    return list(envelopes[0].payload["admin_ids"])
