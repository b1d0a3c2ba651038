"""The study's Access tab: who has access and how (users and groups, buckets, break-the-glass,
PACS transfers, reference numbers), and the actions on them.

Each section is one listing of the service that owns it, asked with the user's token; a
section the API refuses this user (403, 404) is left out, so the page shows exactly what the
API lets this user see. Every action is the API's own route; its refusal is shown on the page.

A patient reference number is a credential (with the date of birth it opens the study): the
Access tab shows it to the department's staff, but its actions name it by its reference id
(`reference_id` of the study store's list), never by the number, so that no URL, form action or
access log of a proxy holds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import time
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.security import read_form
from studyshare.portal.sessions import Session
from studyshare.portal.times import day_bound
from studyshare.portal.web import (
    TEMPLATES,
    api_of,
    checked,
    redirect,
    render,
    require_login,
    session_of,
    zone_of,
)

router = APIRouter(include_in_schema=False)

#: refusals that mean "not for you" (or "nothing here"): the section is left out
HIDDEN = frozenset({403, 404})
#: roles and paths that make the study page offer the Access and Logging tabs; a hint only,
#: the pages show what the API answers
ACCESS_ROLES = frozenset({"service_desk", "auditor", "department_admin", "department_staff"})
LOGGING_ROLES = frozenset({"service_desk", "auditor"})
OWNING_VIA = frozenset({"owner", "department", "service_desk"})
#: transfers that may be sent again (the API refuses a pending one)
RESENDABLE = frozenset({"forwarded", "failed"})


@dataclass(frozen=True)
class Section:
    """One listing of the Access tab: its data, or why it is not shown."""

    data: Any = None
    problem: str | None = None
    hidden: bool = False

    @property
    def shown(self) -> bool:
        return not self.hidden


def section_of(result: Any, shape: Callable[[Any], Any] | None = None) -> Section:
    """A listing's answer as a section (its data shaped for the page); a refusal that means
    "not for you" hides it, any other shows the API's detail."""
    if isinstance(result, ApiProblem):
        if result.status in HIDDEN:
            return Section(hidden=True)
        return Section(problem=result.detail)
    if isinstance(result, BaseException):
        raise result
    return Section(data=shape(result) if shape else result)


def tabs_for(
    user: dict[str, Any], via: str | None, further_sharing: bool = False, current: str = "study"
) -> list[str]:
    """The study page's tabs for this user: a hint from the user's roles and access path (the
    API decides what each tab then shows); the tab shown is always among them."""
    roles = set(user.get("roles") or ())
    admin = bool(user.get("admin_of"))
    tabs = ["study"]
    if roles & ACCESS_ROLES or admin or via in OWNING_VIA or further_sharing or current == "access":
        tabs.append("access")
    if reads_audit(user) or current == "logging":
        tabs.append("logging")
    return tabs


def reads_audit(user: dict[str, Any]) -> bool:
    """Whether the menu offers the auditor's pages (a hint: the audit API decides)."""
    return bool(set(user.get("roles") or ()) & LOGGING_ROLES or user.get("admin_of"))


#: the study tabs and the audit menu entry, for the study page and the header of every page
TEMPLATES.env.globals.update(study_tabs=tabs_for, reads_audit=reads_audit)


def bucket_state(bucket: dict[str, Any], study_uid: str) -> str:
    """The bucket's state for this study: revoked, removed (the study only), expired, locked,
    active."""
    if bucket.get("status") == "revoked":
        return "revoked"
    if study_uid not in bucket.get("active_study_uids", bucket.get("study_uids", ())):
        return "removed"
    if bucket.get("status") == "expired" or bucket.get("expired"):
        return "expired"
    if bucket.get("locked"):
        return "locked"
    return "active"


def grants_of(buckets: list[dict[str, Any]], study_uid: str) -> list[dict[str, Any]]:
    """The Users section: one row per recipient of each bucket holding the study, with the
    type of access, until when, granted by whom and when; active rows first, newest first."""
    rows = []
    for bucket in buckets:
        state = bucket_state(bucket, study_uid)
        for r in bucket.get("recipients") or ():
            row_state = "revoked" if r.get("revoked") and state != "removed" else state
            rows.append(
                {
                    "bucket_id": bucket["bucket_id"],
                    "recipient_id": r["recipient_id"],
                    "kind": r.get("kind", "user"),
                    "name": r.get("name") or r.get("email") or r["recipient_id"],
                    "access_level": bucket.get("access_level"),
                    "anonymize": bool(bucket.get("anonymize")),
                    "two_factor": bool(bucket.get("two_factor")),
                    "valid_until": bucket.get("valid_until"),
                    "unlimited": bool(bucket.get("unlimited")),
                    "granted_by": bucket.get("sender_name") or bucket.get("sender_id"),
                    "granted_at": bucket.get("shared_at"),
                    "state": row_state,
                    # the cross only where the API lets this user withdraw (issue 16, point 3)
                    "withdrawable": row_state in ("active", "locked")
                    and bool(bucket.get("may_revoke", True)),
                }
            )
    rows.sort(key=lambda r: r["granted_at"] or "", reverse=True)
    rows.sort(key=lambda r: not r["withdrawable"])
    return rows


def bucket_rows(buckets: list[dict[str, Any]], study_uid: str) -> list[dict[str, Any]]:
    """The Buckets section: each bucket with its state for this study and what may be done."""
    rows = []
    for bucket in buckets:
        state = bucket_state(bucket, study_uid)
        names = [r.get("name") or r.get("email") or r["recipient_id"] for r in bucket["recipients"]]
        rows.append(
            {
                **bucket,
                "state": state,
                "recipient_names": names,
                "revocable": state in ("active", "locked") and bool(bucket.get("may_revoke", True)),
                "unlockable": state == "locked",
            }
        )
    rows.sort(key=lambda b: b.get("shared_at") or "", reverse=True)
    return rows


def transfer_rows(transfers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PACS (Transferred): newest first, with whether it may be sent again."""
    rows = [{**t, "resendable": t.get("state") in RESENDABLE} for t in transfers]
    rows.sort(key=lambda t: t.get("requested_at") or "", reverse=True)
    return rows


def reference_state(ref: dict[str, Any]) -> str:
    """revoked, non_compliant (flagged: breaks the department's rule), awaiting_pincode,
    usable, or not_usable (outside its valid from/to)."""
    if ref.get("revoked"):
        return "revoked"
    if not ref.get("complies_with_rule", True):
        return "non_compliant"
    if ref.get("pincode_required") and not ref.get("pincode_set"):
        return "awaiting_pincode"
    return "usable" if ref.get("usable") else "not_usable"


def reference_rows(refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [{**r, "state": reference_state(r)} for r in refs]
    rows.sort(key=lambda r: r.get("issued_at") or "", reverse=True)
    rows.sort(key=lambda r: r["state"] == "revoked")
    return rows


def issue_request(form: dict[str, str], zone: ZoneInfo) -> dict[str, Any]:
    """The `POST /api/studies/{uid}/reference-numbers` body of the issue form (its days are
    days of `zone`: valid from the first second of one, to the last of the other)."""
    body: dict[str, Any] = {}
    if valid_from := day_bound(form.get("valid_from", ""), time(0, 0, 0), zone):
        body["valid_from"] = valid_from
    if valid_to := day_bound(form.get("valid_to", ""), time(23, 59, 59), zone):
        body["valid_to"] = valid_to
    if mobile := form.get("patient_mobile", "").strip():
        body["patient_mobile"] = mobile
    return body


# -- names -----------------------------------------------------------------------------------

#: ids a page shows by name, and the public view that names them (identity's)
NAMED = {"usr_": "/api/users/{}", "dep_": "/api/departments/{}"}
MAX_NAMED = 40


async def names_of(request: Request, ids: Iterable[str | None]) -> dict[str, str]:
    """The names of the users and departments among `ids` (at most `MAX_NAMED`), from their
    public views; an id identity does not name for this user keeps showing as the id."""
    wanted = sorted({i for i in ids if i and i.startswith(tuple(NAMED))})[:MAX_NAMED]

    async def one(some_id: str) -> tuple[str, str | None]:
        path = NAMED[some_id[:4]].format(quote(some_id, safe=""))
        try:
            doc = await api_of(request).call(session_of(request), "GET", path)
        except ApiProblem:
            return some_id, None
        parts = (doc.get("first_name"), doc.get("last_name"))
        return some_id, doc.get("name") or " ".join(p for p in parts if p) or None

    return {i: name for i, name in await asyncio.gather(*(one(i) for i in wanted)) if name}


# -- the page --------------------------------------------------------------------------------


async def _listing(request: Request, path: str, **params: Any) -> Any:
    try:
        return await api_of(request).call(session_of(request), "GET", path, params=params or None)
    except ApiProblem as problem:
        return problem


@router.get("/studies/{uid}/access")
async def access_tab(request: Request, uid: str) -> Response:
    """The Access tab. It does not ask for the study itself: that would register a view (or,
    for an auditor, a refused access) in the study logging each time the tab is opened."""
    session = require_login(request)
    q = quote(uid, safe="")
    buckets, overview, transfers, rsw, refs = await asyncio.gather(
        _listing(request, "/api/shares", study_uid=uid),
        _listing(request, f"/api/audit/studies/{q}/access"),
        _listing(request, f"/api/studies/{q}/transfers"),
        _listing(request, f"/api/studies/{q}/rsw"),
        _listing(request, f"/api/studies/{q}/reference-numbers"),
    )
    sections = {
        "owner": section_of(overview, lambda o: o.get("exam_owner")),
        "grants": section_of(buckets, lambda b: grants_of(b, uid)),
        "buckets": section_of(buckets, lambda b: bucket_rows(b, uid)),
        "break_glass": section_of(overview, lambda o: o.get("break_the_glass", [])),
        "transfers": section_of(transfers, transfer_rows),
        "rsw": section_of(rsw),
        "references": section_of(refs, lambda r: reference_rows(r.get("items", []))),
    }
    once = session.pending.pop("access_feedback", None) or {}
    if once.get("uid") != uid:
        once = {}
    glass_and_transfers = [
        *(g.get("user_id") for g in sections["break_glass"].data or ()),
        *(x.get("requested_by") for x in sections["transfers"].data or ()),
    ]
    return render(
        request,
        "access.html",
        uid=uid,
        sections=sections,
        names=await names_of(request, glass_and_transfers),
        shown=any(s.shown for s in sections.values()),
        tabs=tabs_for(session.user, None, current="access"),
        current="access",
        section_notices=once.get("notices", {}),
        field_problems=once.get("problems", {}),
        issue_values=once.get("values", {}),
    )


# -- the actions -----------------------------------------------------------------------------


def _back(uid: str, section: str) -> str:
    return f"/studies/{quote(uid, safe='')}/access#{section}"


def feedback(session: Session, uid: str) -> dict[str, dict[str, Any]]:
    """What the Access tab of `uid` shows once after an action: notices per section, refusals
    per control, the issue form's values (feedback about another study is dropped)."""
    kept = session.pending.get("access_feedback")
    if not kept or kept.get("uid") != uid:
        kept = {"uid": uid, "notices": {}, "problems": {}, "values": {}}
        session.pending["access_feedback"] = kept
    return kept


def _done(session: Session, uid: str, section: str, key: str) -> None:
    """A notice shown once at the top of the section acted on (the page opens there)."""
    feedback(session, uid)["notices"][section] = key


def _refused(session: Session, uid: str, field: str, detail: str) -> None:
    """The API's refusal, shown once next to the control that asked."""
    feedback(session, uid)["problems"][field] = detail


async def _act(
    request: Request,
    session: Session,
    method: str,
    path: str,
    done: str,
    back: tuple[str, str],
    field: str,
    **kwargs: Any,
) -> Response:
    """One API action, then back to its section (`back`: study uid, section); its refusal is
    shown next to `field`, the control that asked for it."""
    uid, section = back
    try:
        await api_of(request).call(session, method, path, **kwargs)
    except ApiProblem as problem:
        _refused(session, uid, field, problem.detail)
    else:
        _done(session, uid, section, done)
    return redirect(_back(uid, section))


async def _acting(request: Request) -> tuple[Session, dict[str, str]]:
    session = await checked(request)
    require_login(request)
    return session, await read_form(request)


@router.post("/studies/{uid}/access/withdraw")
async def withdraw(request: Request, uid: str) -> Response:
    """The cross of a line of the Users section: that recipient's access to the bucket."""
    session, form = await _acting(request)
    bucket, recipient = form.get("bucket", ""), form.get("recipient", "")
    return await _act(
        request,
        session,
        "DELETE",
        f"/api/shares/{quote(bucket, safe='')}/recipients/{quote(recipient, safe='')}",
        "access_tab.withdrawn",
        (uid, "users"),
        field=f"grant:{bucket}:{recipient}",
    )


@router.post("/studies/{uid}/access/buckets/{bucket}/{action}")
async def bucket_action(request: Request, uid: str, bucket: str, action: str) -> Response:
    """Revoke the full bucket, remove the study from it, or unlock it."""
    session, _ = await _acting(request)
    b = quote(bucket, safe="")
    routes = {
        "revoke": ("DELETE", f"/api/shares/{b}", "access_tab.bucket_revoked"),
        "remove-study": (
            "DELETE",
            f"/api/shares/{b}/studies/{quote(uid, safe='')}",
            "access_tab.study_removed",
        ),
        "unlock": ("POST", f"/api/shares/{b}/unlock", "access_tab.unlocked"),
    }
    if action not in routes:
        return render(request, "error.html", 404, message_key="error.not_found")
    method, path, done = routes[action]
    return await _act(
        request, session, method, path, done, (uid, "buckets"), field=f"bucket:{bucket}"
    )


@router.post("/studies/{uid}/access/transfers/{transfer}/resend")
async def resend(request: Request, uid: str, transfer: str) -> Response:
    session, _ = await _acting(request)
    q = quote(uid, safe="")
    return await _act(
        request,
        session,
        "POST",
        f"/api/studies/{q}/transfers/{quote(transfer, safe='')}/resend",
        "access_tab.resent",
        (uid, "transfers"),
        field=f"transfer:{transfer}",
    )


@router.post("/studies/{uid}/access/rsw")
async def send_rsw(request: Request, uid: str) -> Response:
    session, _ = await _acting(request)
    return await _act(
        request,
        session,
        "POST",
        f"/api/studies/{quote(uid, safe='')}/rsw",
        "access_tab.rsw_sent",
        (uid, "rsw"),
        field="rsw",
    )


@router.post("/studies/{uid}/access/reference-numbers")
async def issue(request: Request, uid: str) -> Response:
    session, form = await _acting(request)
    body = issue_request(form, zone_of(request))
    try:
        await api_of(request).call(
            session, "POST", f"/api/studies/{quote(uid, safe='')}/reference-numbers", json=body
        )
    except ApiProblem as problem:
        _refused(session, uid, "issue", problem.detail)
        feedback(session, uid)["values"] = {
            k: form.get(k, "") for k in ("valid_from", "valid_to", "patient_mobile")
        }
    else:
        _done(session, uid, "reference-numbers", "access_tab.issued")
    return redirect(_back(uid, "reference-numbers"))


@router.post("/studies/{uid}/access/reference-numbers/regenerate")
async def regenerate(request: Request, uid: str) -> Response:
    session, _ = await _acting(request)
    return await _act(
        request,
        session,
        "POST",
        f"/api/studies/{quote(uid, safe='')}/reference-numbers/regenerate",
        "access_tab.regenerated",
        (uid, "reference-numbers"),
        field="regenerate",
    )


@router.post("/studies/{uid}/access/reference-numbers/{reference_id}/revoke")
async def revoke_number(request: Request, uid: str, reference_id: str) -> Response:
    """Revoke the reference number named by its reference id (never by the number)."""
    session, _ = await _acting(request)
    q = quote(uid, safe="")
    return await _act(
        request,
        session,
        "DELETE",
        f"/api/studies/{q}/reference-numbers/{quote(reference_id, safe='')}",
        "access_tab.number_revoked",
        (uid, "reference-numbers"),
        field=f"ref:{reference_id}",
    )


@router.post("/studies/{uid}/access/reference-numbers/{reference_id}/pincode")
async def set_pincode(request: Request, uid: str, reference_id: str) -> Response:
    """Set the pincode of the reference number named by its reference id."""
    session, form = await _acting(request)
    q = quote(uid, safe="")
    return await _act(
        request,
        session,
        "PUT",
        f"/api/studies/{q}/reference-numbers/{quote(reference_id, safe='')}/pincode",
        "access_tab.pincode_set",
        (uid, "reference-numbers"),
        field=f"pincode:{reference_id}",
        json={"pincode": form.get("pincode", "").strip()},
    )
