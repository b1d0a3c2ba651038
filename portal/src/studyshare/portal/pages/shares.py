"""The share dialog (with the recipient type-ahead), its confirmation, and a share's page."""

from __future__ import annotations

import asyncio
from calendar import monthrange
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from studyshare.portal import i18n
from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.security import read_form_lists
from studyshare.portal.web import (
    api_of,
    checked,
    flash,
    flash_problem,
    redirect,
    render,
    require_login,
)

router = APIRouter(include_in_schema=False)

ACCESS_LEVELS = ("images_report_read", "images_report_write", "images")
#: form checkboxes that are booleans of the share request, as named there
OPTIONS = (
    "urgent",
    "anonymize",
    "allow_further_sharing",
    "allow_download",
    "two_factor",
    "include_uploaded_together",
)
#: the dialog's field beside which a refusal of the share API is shown (by its rule)
RULE_FIELDS = {
    "ReasonRequired": "reason",
    "PatientConsentRequired": "patient_agreed",
    "HipaaConfirmationRequired": "hipaa_confirmed",
    "ImagesOnlyNotAllowedForUser": "access_level",
    "AccessLevelExceedsHeld": "access_level",
    "ValidityBeyondDepartmentMaximum": "valid_until",
    "ValidUntilInPast": "valid_until",
    "ValidityChoiceAmbiguous": "valid_until",
    "ValidityExceedsHeld": "valid_until",
    "UnlimitedAccessNotAllowed": "valid_until",
    "NoRecipients": "recipient",
    "RecipientNotKnown": "recipient",
    "FavoriteNotARecipient": "recipient",
    "LabelScopeNeedsGroupRecipient": "label",
    "DownloadExceedsHeld": "allow_download",
    "PacsShareNeedsDownload": "allow_download",
    "AnonymizationMustStay": "anonymize",
    "TwoFactorMustStay": "two_factor",
}


@router.get("/share")
async def share_dialog(request: Request) -> Response:
    require_login(request)
    uids = request.query_params.getlist("study")
    preferences = await _preferences(request)
    values = {
        "access_level": "images_report_read",
        "two_factor": preferences.get("two_factor", False),
        "send_mail": preferences.get("send_mail", True),
    }
    return await _dialog(request, uids, values, recipients=[], error=None, defaults=True)


async def _preferences(request: Request) -> dict[str, Any]:
    """The remembered two-factor and send-mail choices of the last share."""
    try:
        return await api_of(request).call(request.state.session, "GET", "/api/share-preferences")
    except ApiProblem:
        return {}


async def _dialog(
    request: Request,
    uids: list[str],
    values: dict[str, Any],
    recipients: list[dict[str, str]],
    error: str | None,
    status: int = 200,
    *,
    defaults: bool = False,
    rule: str | None = None,
) -> Response:
    """The dialog: the studies, the department's policy (its default and maximum validity,
    whether unlimited is allowed, HIPAA), my favourites; the refusal beside its field."""
    api, session = api_of(request), request.state.session
    studies = []
    for uid in uids[:50]:
        try:
            studies.append(await api.call(session, "GET", f"/api/studies/{quote(uid)}"))
        except ApiProblem:
            studies.append({"study_uid": uid})
    department = next((s["department_id"] for s in studies if s.get("department_id")), None)
    policy, favorites, labels = await asyncio.gather(
        _policy(request, department), _favorites(request), _labels(request)
    )
    today = date.today()
    most = policy.get("max_validity_days")
    if defaults:
        default = _default_until(today, policy)
        if most:
            default = min(default, today + timedelta(days=most))
        values["valid_until"] = default.isoformat()
    chosen = {r["id"] for r in recipients}
    return render(
        request,
        "share.html",
        status,
        studies=studies,
        values=values,
        recipients=recipients,
        error=error,
        error_field=RULE_FIELDS.get(rule or ""),
        access_levels=ACCESS_LEVELS,
        policy=policy,
        max_date=(today + timedelta(days=most)).isoformat() if most else None,
        hipaa=bool(policy.get("hipaa_confirmation_required"))
        or rule == "HipaaConfirmationRequired"
        or bool(values.get("hipaa_confirmed")),
        may_allow_download=all((s.get("access") or {}).get("download") for s in studies),
        favorites=[f for f in favorites if f.get("kind") != "email"],
        starred={f["recipient_id"] for f in favorites} | set(values.get("favorites", [])),
        chosen=chosen,
        labels=labels,
    )


async def _labels(request: Request) -> list[dict[str, Any]]:
    """The labels to pick from: mine and my groups' (`GET /api/labels`)."""
    try:
        return await api_of(request).call(request.state.session, "GET", "/api/labels") or []
    except ApiProblem:
        return []


def picked_label(pick: str) -> dict[str, str] | None:
    """A label picked from the list (`scope|text`) as the share's `label`."""
    scope, _, text = pick.partition("|")
    if scope in ("user", "group") and text.strip():
        return {"text": text.strip(), "scope": scope}
    return None


async def _policy(request: Request, department_id: str | None) -> dict[str, Any]:
    """The sending department's sharing policy (its defaults; the API enforces it)."""
    if not department_id:
        return {}
    try:
        department = await api_of(request).call(
            request.state.session, "GET", f"/api/departments/{quote(department_id)}"
        )
    except ApiProblem:
        return {}
    return (department or {}).get("policy") or {}


async def _favorites(request: Request) -> list[dict[str, Any]]:
    try:
        return await api_of(request).call(request.state.session, "GET", "/api/favorites") or []
    except ApiProblem:
        return []


@router.get("/share/recipients")
async def recipient_search(request: Request, q: str = "") -> Response:
    """The type-ahead: recipients matching `q` (name, physician number, public mobile, e-mail)."""
    session = require_login(request)
    items: list[dict[str, Any]] = []
    if len(q.strip()) >= 2:
        try:
            found = await api_of(request).call(
                session, "GET", "/api/recipients", params={"q": q.strip()}
            )
            items = found.get("items", [])
        except ApiProblem:
            items = []
    return render(request, "partials/recipient_results.html", items=items, q=q.strip())


#: the detailed search's fields: the dialog's input names (prefixed, so the share form ignores
#: them) -> the API's query parameters
DETAILED = (
    "first_name",
    "last_name",
    "name",
    "physician_number",
    "registry",
    "email",
    "mobile",
)
KINDS = ("user", "group", "department")


def _kind(value: str) -> str | None:
    return value if value in KINDS else None


async def _results(request: Request, params: dict[str, Any], more: str | None) -> Response:
    session = require_login(request)
    try:
        found = await api_of(request).call(session, "GET", "/api/recipients", params=params)
    except ApiProblem:
        found = {"items": [], "total": 0, "page": 1, "page_size": 20}
    page, size, total = found["page"], found["page_size"], found["total"]
    pages = max(1, -(-total // size))
    return render(
        request,
        "partials/recipient_results.html",
        items=found["items"],
        q="detailed",
        page=page,
        pages=pages,
        more=f"{more}&page={page + 1}" if more and page < pages else None,
    )


@router.get("/share/recipients/list")
async def recipient_list(request: Request, list_kind: str = "", page: int = 1) -> Response:
    """ "Select from list": every recipient of a kind, by name, a page at a time."""
    kind = _kind(list_kind)
    params: dict[str, Any] = {"browse": "true", "page": max(1, min(page, 1000))}
    if kind:
        params["kind"] = kind
    more = f"/share/recipients/list?list_kind={quote(kind or '')}"
    return await _results(request, params, more)


@router.get("/share/recipients/detailed")
async def recipient_detailed(request: Request) -> Response:
    """The detailed search: recipients matching every filled-in field."""
    query = request.query_params
    params: dict[str, Any] = {
        f: query.get(f"ds_{f}", "").strip()[:200]
        for f in DETAILED
        if query.get(f"ds_{f}", "").strip()
    }
    kind = _kind(query.get("ds_kind", ""))
    if kind:
        params["kind"] = kind
    if not params or params.keys() == {"kind"}:
        return render(request, "partials/recipient_results.html", items=[], q="")
    return await _results(request, params, None)


@router.get("/share/recipient")
async def recipient_chip(
    request: Request, kind: str, id: str, name: str = "", starred: bool = False
) -> Response:
    """A chosen recipient (a chip with its hidden field and its star); the API checks the id
    at sharing."""
    require_login(request)
    chip = {"kind": kind, "id": id, "name": name or id}
    return render(
        request,
        "partials/recipient_chip.html",
        chip=chip,
        clear_results=True,
        starred={id} if starred else set(),
    )


@router.get("/share/nothing")
async def nothing() -> Response:
    """What a removed chip is replaced with."""
    return HTMLResponse("")


def _recipients(form: dict[str, list[str]]) -> list[dict[str, str]]:
    chosen = []
    for value in form.get("recipient", []):
        kind, _, rest = value.partition(":")
        rid, _, name = rest.partition(":")
        if kind and rid:
            chosen.append({"kind": kind, "id": rid, "name": name or rid})
    return chosen


def _default_until(today: date, policy: dict[str, Any]) -> date:
    """The policy's default validity from today: its days, else its calendar months (one)."""
    if policy.get("default_validity_days") and not policy.get("default_validity_months"):
        return today + timedelta(days=policy["default_validity_days"])
    index = today.month - 1 + (policy.get("default_validity_months") or 1)
    year, month = today.year + index // 12, index % 12 + 1
    return today.replace(year=year, month=month, day=min(today.day, monthrange(year, month)[1]))


def _valid_until(value: str) -> str | None:
    """The chosen day as a date: the API ends it at the end of that day in the sending
    department's time zone."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day.isoformat()


def share_request(form: dict[str, list[str]]) -> dict[str, Any]:
    """The `POST /api/shares` body of the dialog's form."""

    def one(name: str) -> str:
        return (form.get(name) or [""])[-1].strip()

    recipients: list[dict[str, Any]] = [
        {"kind": r["kind"], "id": r["id"]} for r in _recipients(form)
    ]
    if one("email"):
        recipients.append({"kind": "email", "email": one("email")})
    body: dict[str, Any] = {
        "study_uids": form.get("study", []),
        "recipients": recipients,
        "access_level": one("access_level") or "images_report_read",
        "reason": one("reason"),
        "patient_agreed": one("patient_agreed") == "on",
        "send_mail": one("send_mail") == "on",
        **{option: one(option) == "on" for option in OPTIONS},
    }
    if one("language") in i18n.LANGUAGES:
        body["language"] = one("language")
    if one("unlimited") == "on":
        body["unlimited"] = True
    elif one("valid_until"):
        body["valid_until"] = _valid_until(one("valid_until"))
    if one("label_pick") and (label := picked_label(one("label_pick"))):
        body["label"] = label
    elif one("label"):
        body["label"] = {"text": one("label"), "scope": one("label_scope") or "user"}
    if one("message"):
        body["message"] = one("message")
    if one("hipaa_confirmed") == "on":
        body["hipaa_confirmed"] = True
    chosen = {r["id"] for r in recipients if r.get("id")}
    body["add_to_favorites"] = [f for f in dict.fromkeys(form.get("favorite", [])) if f in chosen]
    return body


@router.post("/share")
async def share(request: Request) -> Response:
    session = await checked(request)
    require_login(request)
    form = await read_form_lists(request)
    body = share_request(form)
    try:
        result = await api_of(request).call(session, "POST", "/api/shares", json=body)
    except ApiProblem as problem:
        values: dict[str, Any] = {
            k: v[-1] for k, v in form.items() if k not in ("recipient", "study", "csrf")
        }
        for flag in (*OPTIONS, "send_mail", "patient_agreed", "unlimited", "hipaa_confirmed"):
            values[flag] = values.get(flag) == "on"
        values["favorites"] = form.get("favorite", [])
        return await _dialog(
            request,
            body["study_uids"],
            values,
            _recipients(form),
            problem.detail,
            422,
            rule=problem.rule,
        )
    return render(
        request,
        "share_done.html",
        result=result,
        again="/share?" + "&".join(f"study={quote(u, safe='')}" for u in body["study_uids"]),
    )


# -- a share (bucket): its sender, the study owner, an admin, the service desk -------------


@router.get("/shares/{bucket_id}")
async def bucket_page(request: Request, bucket_id: str) -> Response:
    session = require_login(request)
    try:
        bucket = await api_of(request).call(session, "GET", f"/api/shares/{quote(bucket_id)}")
    except ApiProblem as problem:
        return render(request, "bucket.html", problem.status, bucket=None, error=problem.detail)
    return render(request, "bucket.html", bucket=bucket, error=None)


@router.post("/shares/{bucket_id}/unlock")
async def unlock(request: Request, bucket_id: str) -> Response:
    session = await checked(request)
    require_login(request)
    return await _bucket_action(
        request,
        session,
        "POST",
        f"/api/shares/{quote(bucket_id)}/unlock",
        bucket_id,
        "bucket.unlocked",
    )


@router.post("/shares/{bucket_id}/revoke")
async def revoke(request: Request, bucket_id: str) -> Response:
    session = await checked(request)
    require_login(request)
    return await _bucket_action(
        request,
        session,
        "DELETE",
        f"/api/shares/{quote(bucket_id)}",
        bucket_id,
        "bucket.revoked_done",
    )


async def _bucket_action(
    request: Request, session: Any, method: str, path: str, bucket_id: str, done: str
) -> Response:
    try:
        await api_of(request).call(session, method, path)
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    else:
        flash(request, done)
    return redirect(f"/shares/{quote(bucket_id)}")
