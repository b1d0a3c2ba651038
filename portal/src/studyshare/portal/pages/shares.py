"""The share dialog (with the recipient type-ahead), its confirmation, and a share's page."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
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
DEFAULT_VALIDITY = timedelta(days=31)
#: form checkboxes that are booleans of the share request, as named there
OPTIONS = ("urgent", "anonymize", "allow_further_sharing", "allow_download", "two_factor")


@router.get("/share")
async def share_dialog(request: Request) -> Response:
    session = require_login(request)
    uids = request.query_params.getlist("study")
    preferences = await _preferences(request)
    values = {
        "access_level": "images_report_read",
        "valid_until": (date.today() + DEFAULT_VALIDITY).isoformat(),
        "two_factor": preferences.get("two_factor", False),
        "send_mail": preferences.get("send_mail", True),
    }
    del session
    return await _dialog(request, uids, values, recipients=[], error=None)


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
) -> Response:
    studies = []
    for uid in uids[:50]:
        try:
            studies.append(
                await api_of(request).call(
                    request.state.session, "GET", f"/api/studies/{quote(uid)}"
                )
            )
        except ApiProblem:
            studies.append({"study_uid": uid})
    return render(
        request,
        "share.html",
        status,
        studies=studies,
        values=values,
        recipients=recipients,
        error=error,
        access_levels=ACCESS_LEVELS,
    )


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


@router.get("/share/recipient")
async def recipient_chip(request: Request, kind: str, id: str, name: str = "") -> Response:
    """A chosen recipient (a chip with its hidden field); the API checks the id at sharing."""
    require_login(request)
    chip = {"kind": kind, "id": id, "name": name or id}
    return render(request, "partials/recipient_chip.html", chip=chip, clear_results=True)


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


def _valid_until(value: str) -> str | None:
    """The end of the chosen day, in UTC (the API wants an aware date-time)."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC).isoformat()


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
    if one("label"):
        body["label"] = {"text": one("label")}
    if one("message"):
        body["message"] = one("message")
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
        values = {k: v[-1] for k, v in form.items() if k not in ("recipient", "study", "csrf")}
        for flag in (*OPTIONS, "send_mail", "patient_agreed", "unlimited"):
            values[flag] = values.get(flag) == "on"
        return await _dialog(
            request, body["study_uids"], values, _recipients(form), problem.detail, 422
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
