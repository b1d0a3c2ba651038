"""The auditor's pages: a study's logging with filters, who could open it at a moment, its
FHIR and DICOM exports, the log across studies, alerts and the hash chain check.

Every page is one route of the audit API, asked with the user's token: the audit service
decides who reads what (auditors and the service desk everything, a department admin their
department's studies) and records every read; a refusal's detail is shown on the page.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.adapters.public_api import ApiProblem, problem_of
from studyshare.portal.pages.access import names_of, tabs_for
from studyshare.portal.security import NO_STORE
from studyshare.portal.times import utc_moment
from studyshare.portal.web import (
    api_of,
    flash_problem,
    redirect,
    render,
    require_login,
    zone_of,
)

router = APIRouter(include_in_schema=False)

#: the study logging's categories (audit `domain/entries.py`), offered in the filter
CATEGORIES = (
    "share",
    "view",
    "report_read",
    "report_write",
    "download",
    "forward",
    "otp",
    "otp_failure",
    "lock",
    "unlock",
    "revocation",
    "expiry",
    "break_the_glass",
    "reference_number",
    "pincode_failure",
    "patient_login",
    "access_refused",
    "study",
    "search",
    "login",
    "identity",
    "notification",
    "other",
)
#: the filter form's fields and the audit API's query parameters they become
FILTERS = {
    "category": "category",
    "event_type": "event_type",
    "actor": "actor",
    "patient_id": "patient_id",
    "study": "study",
    "from": "from",
    "to": "to",
}
PAGE_SIZE = 100
EXPORTS = {
    "fhir": ("/api/audit/export/fhir", "application/fhir+json", "json"),
    "dicom": ("/api/audit/export/dicom", "application/xml", "xml"),
}


def log_query(query: dict[str, str], allowed: tuple[str, ...], zone: ZoneInfo) -> dict[str, str]:
    """The audit API's parameters of the filter form (empty fields left out)."""
    params: dict[str, str] = {}
    for field in allowed:
        value = (query.get(field) or "").strip()
        if not value:
            continue
        params[FILTERS[field]] = utc_moment(value, zone) if field in ("from", "to") else value
    return params


def field_of(problem: ApiProblem, fields: tuple[str, ...]) -> str | None:
    """The form field a validation refusal is about (`errors[].loc` names the parameter)."""
    for error in problem.body.get("errors") or ():
        loc = error.get("loc") or []
        if loc and str(loc[-1]) in fields:
            return str(loc[-1])
    return None


def entry_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log entries as the table shows them: who, and the payload as readable JSON."""
    rows = []
    for entry in items:
        actor = entry.get("actor") or {}
        rows.append(
            {
                **entry,
                "who": actor.get("id") or ", ".join(entry.get("actors") or ()) or "system",
                "role": actor.get("role"),
                "details": json.dumps(entry.get("payload") or {}, indent=2, sort_keys=True),
            }
        )
    return rows


def pages_of(query: dict[str, str], page: dict[str, Any]) -> dict[str, str | None]:
    """Links to the previous and next page, keeping the filters."""
    offset, limit = int(page.get("offset", 0)), int(page.get("limit", PAGE_SIZE))
    kept = {k: v for k, v in query.items() if k in FILTERS and v}

    def link(at: int) -> str:
        return "?" + urlencode({**kept, "offset": at})

    return {
        "previous": link(max(offset - limit, 0)) if offset > 0 else None,
        "next": link(page["next_offset"]) if page.get("next_offset") is not None else None,
    }


async def _log_page(
    request: Request, path: str, allowed: tuple[str, ...], **template: Any
) -> Response:
    session = require_login(request)
    query = dict(request.query_params)
    params = log_query(query, allowed, zone_of(request))
    try:
        offset = max(int(query.get("offset") or 0), 0)
    except ValueError:
        offset = 0
    page: dict[str, Any] | None = None
    problem: str | None = None
    problem_field: str | None = None
    status = 200
    try:
        page = await api_of(request).call(
            session, "GET", path, params={**params, "offset": offset, "limit": PAGE_SIZE}
        )
    except ApiProblem as refused:
        status, problem = refused.status, refused.detail
        problem_field = field_of(refused, tuple(FILTERS.values()))
    rows = entry_rows(page["items"]) if page else []
    return render(
        request,
        template.pop("template"),
        status,
        query=query,
        page=page,
        rows=rows,
        names=await names_of(request, (r["who"] for r in rows)),
        pages=pages_of(query, page) if page else {},
        problem=problem,
        problem_field=problem_field,
        categories=CATEGORIES,
        allowed=allowed,
        **template,
    )


@router.get("/studies/{uid}/logging")
async def study_logging(request: Request, uid: str) -> Response:
    """The study logging: every registration about the study, filtered (the mails link here)."""
    require_login(request)
    return await _log_page(
        request,
        f"/api/audit/studies/{quote(uid, safe='')}/log",
        ("category", "event_type", "actor", "from", "to"),
        template="audit_log.html",
        uid=uid,
        tabs=tabs_for(request.state.session.user, None, current="logging"),
        current="logging",
    )


@router.get("/studies/{uid}/logging/export/{kind}")
async def export(request: Request, uid: str, kind: str) -> Response:
    """The study's log as a FHIR AuditEvent Bundle or DICOM audit messages, as a download."""
    session = require_login(request)
    if kind not in EXPORTS:
        return render(request, "error.html", 404, message_key="error.not_found")
    path, media_type, extension = EXPORTS[kind]
    response = await api_of(request).send(session, "GET", path, params={"study": uid})
    if response.status_code != 200:
        flash_problem(request, problem_of(response).detail)
        return redirect(f"/studies/{quote(uid, safe='')}/logging")
    filename = f"audit-{''.join(c for c in uid if c.isalnum() or c in '.-')}.{kind}.{extension}"
    return Response(
        response.content,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": NO_STORE,
        },
    )


@router.get("/studies/{uid}/access-at")
async def access_at(request: Request, uid: str, t: str = "") -> Response:
    """Who could open the study at moment `t`, and through which grant."""
    session = require_login(request)
    answer: dict[str, Any] | None = None
    problem: str | None = None
    if t.strip():
        try:
            answer = await api_of(request).call(
                session,
                "GET",
                f"/api/audit/studies/{quote(uid, safe='')}/access-at",
                params={"t": utc_moment(t, zone_of(request))},
            )
        except ApiProblem as refused:
            problem = refused.detail
    rows = (answer or {}).get("could_open") or []
    named = [r.get(k) for r in rows for k in ("principal_id", "granted_by", "through")]
    return render(
        request,
        "audit_access_at.html",
        uid=uid,
        moment_asked=t.strip(),
        answer=answer,
        names=await names_of(request, named),
        problem=problem,
        tabs=tabs_for(session.user, None, current="logging"),
        current="logging",
    )


@router.get("/audit")
async def audit_home(request: Request) -> Response:
    """The auditor's start: open a study's logging, and the log across studies."""
    require_login(request)
    return await _log_page(
        request,
        "/api/audit/log",
        ("study", "actor", "patient_id", "category", "event_type", "from", "to"),
        template="audit_home.html",
    )


@router.get("/audit/study")
async def open_study(request: Request, uid: str = "") -> Response:
    """The "open a study's logging" form."""
    require_login(request)
    uid = uid.strip()
    if not uid:
        return redirect("/audit")
    return redirect(f"/studies/{quote(uid, safe='')}/logging")


@router.get("/audit/alerts")
async def alerts(request: Request) -> Response:
    """Security alerts: bucket locks, break-the-glass, bursts of failures."""
    session = require_login(request)
    query = dict(request.query_params)
    params = log_query(query, ("from", "to"), zone_of(request))
    answer: dict[str, Any] | None = None
    problem: str | None = None
    try:
        answer = await api_of(request).call(session, "GET", "/api/audit/alerts", params=params)
    except ApiProblem as refused:
        problem = refused.detail
    keys = [a.get("key_value") for a in (answer or {}).get("items", [])]
    return render(
        request,
        "audit_alerts.html",
        query=query,
        answer=answer,
        problem=problem,
        names=await names_of(request, keys),
    )


@router.get("/audit/verify")
async def verify(request: Request) -> Response:
    """Both hash chains checked; a changed, removed or reordered entry is named by its seq."""
    session = require_login(request)
    report: dict[str, Any] | None = None
    problem: str | None = None
    try:
        report = await api_of(request).call(session, "GET", "/api/audit/verify")
    except ApiProblem as refused:
        problem = refused.detail
    return render(request, "audit_verify.html", report=report, problem=problem)
