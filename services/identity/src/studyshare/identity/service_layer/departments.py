"""Departments (sending sources and PACS destinations), their policy, admins and members."""

from __future__ import annotations

from typing import Any

from studyshare.contracts.events.identity import PacsEndpoint
from studyshare.contracts.tokens import AccessClaims
from studyshare.identity.adapters.read_models import DEPARTMENTS, USERS
from studyshare.identity.domain.department import Department, Policy
from studyshare.identity.domain.exceptions import DepartmentNotFound, NotAllowed, UserNotFound
from studyshare.identity.domain.user import User
from studyshare.identity.service_layer.accounts import actor_of, department_admins_follow
from studyshare.identity.service_layer.context import Identity
from studyshare.plumbing.domain import new_id


def _desk(principal: AccessClaims) -> None:
    if not principal.has_role("service_desk"):
        raise NotAllowed("only the service desk does this")


def _desk_or_admin(principal: AccessClaims, department_id: str) -> None:
    if not (principal.has_role("service_desk") or department_id in principal.admin_of):
        raise NotAllowed("only the service desk or an admin of this department does this")


async def create_department(
    app: Identity,
    principal: AccessClaims,
    ip: str | None,
    *,
    name: str,
    country: str,
    kind: str,
    email: str | None,
    pacs: PacsEndpoint | None,
    rsw: PacsEndpoint | None,
    policy: Policy | None,
    institution_id: str | None = None,
    language: str | None = None,
) -> str:
    _desk(principal)
    department_id = new_id("dep")
    await app.execute(
        Department,
        department_id,
        lambda _: Department.create(
            department_id,
            name=name,
            country=country,
            kind=kind,
            email=email,
            pacs=pacs,
            rsw=rsw,
            created_by=principal.sub,
            policy=policy,
            institution_id=institution_id,
            language=language,
        ),
        actor_of(principal, ip),
    )
    return department_id


async def set_policy(
    app: Identity, department_id: str, policy: Policy, principal: AccessClaims, ip: str | None
) -> None:
    _desk_or_admin(principal, department_id)
    await app.execute(
        Department,
        department_id,
        lambda d: d.set_policy(policy, principal.sub),
        actor_of(principal, ip),
    )


async def department_doc(app: Identity, department_id: str) -> dict[str, Any]:
    doc = await app.db[DEPARTMENTS].find_one({"_id": department_id})
    if doc is None:
        raise DepartmentNotFound(f"department {department_id} does not exist")
    return doc


async def _user(app: Identity, user_id: str) -> dict[str, Any]:
    doc = await app.db[USERS].find_one({"_id": user_id})
    if doc is None:
        raise UserNotFound(f"user {user_id} does not exist")
    return doc


async def _joinable(app: Identity, user_id: str, principal: AccessClaims) -> None:
    """Whom a department admin may make a member or admin: a user of no department or of the
    admin's own departments, never a service desk account. (Adding anyone once let an admin
    read a stranger's private contact data, which administered users show, and end their
    sessions at will; other users join through the service desk.)"""
    user = await _user(app, user_id)
    if principal.has_role("service_desk"):
        return
    theirs = set(user.get("department_ids") or ())
    if "service_desk" in user.get("roles", ()) or not theirs <= set(principal.admin_of):
        raise NotAllowed(
            "a department admin adds users of no department or of their own departments; "
            "the service desk adds others"
        )


async def assign_admin(
    app: Identity, department_id: str, user_id: str, principal: AccessClaims, ip: str | None
) -> None:
    """The user becomes admin (and member) of the department: a Department event and the
    user's new roles."""
    _desk_or_admin(principal, department_id)
    await department_doc(app, department_id)
    await _joinable(app, user_id, principal)
    actor = actor_of(principal, ip)
    await app.execute(
        Department, department_id, lambda d: d.assign_admin(user_id, principal.sub), actor
    )
    await app.execute(
        User,
        user_id,
        lambda u: u.set_roles(
            principal.sub,
            roles=(*u.roles, "department_admin"),
            department_ids=(*u.department_ids, department_id),
            admin_of=(*u.admin_of, department_id),
        ),
        actor,
    )


async def remove_admin(
    app: Identity, department_id: str, user_id: str, principal: AccessClaims, ip: str | None
) -> None:
    _desk_or_admin(principal, department_id)
    actor = actor_of(principal, ip)
    await app.execute(
        Department, department_id, lambda d: d.remove_admin(user_id, principal.sub), actor
    )

    def decide(u: User) -> list:
        admin_of = tuple(d for d in u.admin_of if d != department_id)
        roles = u.roles if admin_of else tuple(r for r in u.roles if r != "department_admin")
        return u.set_roles(principal.sub, roles=roles, admin_of=admin_of)

    await app.execute(User, user_id, decide, actor)


async def add_member(
    app: Identity,
    department_id: str,
    user_id: str,
    role: str,
    principal: AccessClaims,
    ip: str | None,
) -> None:
    """Department staff (or a physician of the department) sees the department's studies."""
    _desk_or_admin(principal, department_id)
    await department_doc(app, department_id)
    await _joinable(app, user_id, principal)
    await app.execute(
        User,
        user_id,
        lambda u: u.set_roles(
            principal.sub,
            roles=(*u.roles, role),
            department_ids=(*u.department_ids, department_id),
        ),
        actor_of(principal, ip),
    )


async def remove_member(
    app: Identity, department_id: str, user_id: str, principal: AccessClaims, ip: str | None
) -> None:
    _desk_or_admin(principal, department_id)
    was_admin_of: tuple[str, ...] = ()

    def decide(u: User) -> list:
        nonlocal was_admin_of
        was_admin_of = u.admin_of
        if department_id not in u.department_ids:
            raise UserNotFound(f"user {user_id} is not a member of department {department_id}")
        department_ids = tuple(d for d in u.department_ids if d != department_id)
        admin_of = tuple(d for d in u.admin_of if d != department_id)
        roles = u.roles
        if not department_ids:
            roles = tuple(r for r in roles if r not in {"department_staff", "department_admin"})
        elif not admin_of:
            roles = tuple(r for r in roles if r != "department_admin")
        return u.set_roles(
            principal.sub, roles=roles, department_ids=department_ids, admin_of=admin_of
        )

    actor = actor_of(principal, ip)
    user, _ = await app.execute(User, user_id, decide, actor)
    await department_admins_follow(app, user_id, was_admin_of, user.admin_of, actor)
