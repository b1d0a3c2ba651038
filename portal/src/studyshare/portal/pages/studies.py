"""The study list and the study page: details, message, images, report, download, forward
to a PACS, two-factor and break-the-glass; each asks the API and shows its answer."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.security import NO_STORE, read_form
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

#: images shown on the study page (a later viewer shows them all)
MAX_IMAGES = 24
#: after a confirmed code the access decision follows the share service's event (relay, broker,
#: the study store's worker): the page waits a few seconds, then reloads itself for at most a
#: minute ("opening the study") instead of asking for the code again
OTP_SETTLE_S = 60.0
OTP_WAIT_S = 4.0
SERIES_UID, SOP_UID, INSTANCE_NUMBER = "0020000E", "00080018", "00200013"
#: only instances with pixel rows are images (the message series is a structured report)
ROWS = "00280010"


#: the study list's filters, as the API's query parameters (`GET /api/studies`)
STUDY_FILTERS = ("q", "modality", "date_from", "date_to", "patient_id")
#: and those of `GET /api/shared-with-me` (booleans as the checkbox sends them)
SHARED_FILTERS = ("unread", "urgent", "label")


def list_queries(params: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The filter form's values as the query parameters of the two lists."""
    studies = {k: params[k].strip() for k in STUDY_FILTERS if params.get(k, "").strip()}
    shared = {k: "true" for k in ("unread", "urgent") if params.get(k) == "on"}
    if params.get("label", "").strip():
        shared["label"] = params["label"].strip()
    return studies, shared


@router.get("/studies")
async def study_list(request: Request) -> Response:
    """Own department's, shared with me and my groups, my practice colleagues' (the API's
    `access.via` says which), filtered by the API."""
    session = require_login(request)
    if session.patient:
        return redirect(f"/studies/{quote(session.user.get('study_uid') or '')}")
    api = api_of(request)
    filters = dict(request.query_params)
    study_params, shared_params = list_queries(filters)
    own, shared = await asyncio.gather(
        api.call(session, "GET", "/api/studies", params=study_params),
        api.call(session, "GET", "/api/shared-with-me", params=shared_params),
        return_exceptions=True,
    )
    problems = [r.detail for r in (own, shared) if isinstance(r, ApiProblem)]
    for result in (own, shared):
        if isinstance(result, BaseException) and not isinstance(result, ApiProblem):
            raise result
    studies = [] if isinstance(own, BaseException) else own.get("items", [])
    shared_items = [] if isinstance(shared, BaseException) else shared.get("items", [])
    shared_buckets = {i.get("bucket_id") for i in shared_items}

    def via(item: dict[str, Any]) -> str | None:
        return (item.get("access") or {}).get("via")

    return render(
        request,
        "studies.html",
        own=[s for s in studies if via(s) not in ("grant", "group")],
        colleagues=[
            s
            for s in studies
            if via(s) == "group" and (s.get("access") or {}).get("bucket_id") not in shared_buckets
        ],
        shared=shared_items,
        errors=problems,
        filters=filters,
        filtered=bool(study_params or shared_params),
    )


@router.get("/shared-with-me/{position}")
async def anonymized_share_link(request: Request, position: int, bucket: str) -> Response:
    """The link of an anonymized share's mail: the study by its place in the share (its UID
    is only ever shown remapped), opened on its study page."""
    session = require_login(request)
    shared = await api_of(request).call(
        session, "GET", "/api/shared-with-me", params={"bucket_id": bucket, "limit": 200}
    )
    for item in shared.get("items", []):
        if item.get("bucket_id") == bucket and item.get("position") == position:
            uid = quote(item["study_uid"])
            return redirect(f"/studies/{uid}?bucket={quote(bucket)}")
    return render(request, "error.html", 404, message_key="error.not_found")


async def _shared_item(request: Request, uid: str, bucket: str | None) -> dict[str, Any] | None:
    """The recipient's entry for this study (the message, its read state, the bucket)."""
    session = request.state.session
    if session.patient:
        return None
    try:
        shared = await api_of(request).call(session, "GET", "/api/shared-with-me")
    except ApiProblem:
        return None
    items = [i for i in shared.get("items", []) if i.get("study_uid") == uid]
    for item in items:
        if bucket is None or item.get("bucket_id") == bucket:
            return item
    return items[0] if items else None


@router.get("/studies/{uid}")
async def study_page(request: Request, uid: str, bucket: str | None = None) -> Response:
    session = require_login(request)
    api = api_of(request)
    path = f"/api/studies/{quote(uid)}"
    loop = asyncio.get_running_loop()
    settle_until = session.pending.get("otp_verified", {}).get(uid, 0.0)
    wait_until = min(settle_until, loop.time() + OTP_WAIT_S)
    while True:
        try:
            study = await api.call(session, "GET", path)
            break
        except ApiProblem as problem:
            settling = problem.rule == "TwoFactorVerificationRequired" and (
                loop.time() < settle_until
            )
            if settling and loop.time() < wait_until:
                await asyncio.sleep(0.3)
                continue
            item = await _shared_item(request, uid, bucket)
            return render(
                request,
                "study.html",
                problem.status if problem.status in (403, 404, 423) else 200,
                uid=uid,
                study=None,
                refusal=problem,
                item=item,
                bucket=bucket or (item or {}).get("bucket_id"),
                images=[],
                report=None,
                opening=settling,
            )
    access = study.get("access") or {}
    bucket = bucket or access.get("bucket_id")
    # an anonymized share lists the study by the UID it shows (the API's `study_uid`)
    item = await _shared_item(request, study.get("study_uid") or uid, bucket)
    forwards = access.get("download") and not session.patient
    images, report, pacs = await asyncio.gather(
        _images(request, uid) if access.get("images") else _nothing(),
        _report(request, uid) if access.get("report") in ("read", "write") else _nothing(),
        _pacs(request) if forwards else _nothing(),
    )
    return render(
        request,
        "study.html",
        uid=uid,
        study=study,
        refusal=None,
        item=item,
        bucket=bucket,
        images=images,
        report=report,
        pacs=pacs or [],
        opening=False,
    )


async def _nothing() -> None:
    return None


async def _pacs(request: Request) -> list[dict[str, Any]]:
    """The PACS one may forward to (`GET /api/pacs`); none when the API refuses the list."""
    try:
        return await api_of(request).call(request.state.session, "GET", "/api/pacs") or []
    except ApiProblem:
        return []


async def _images(request: Request, uid: str) -> list[dict[str, str]]:
    """The study's instances (WADO-RS metadata), in series and instance order."""
    try:
        metadata = await api_of(request).call(
            request.state.session,
            "GET",
            f"/dicomweb/studies/{quote(uid)}/metadata",
            headers={"Accept": "application/dicom+json"},
        )
    except ApiProblem:
        return []

    def value(instance: dict[str, Any], tag: str) -> Any:
        values = (instance.get(tag) or {}).get("Value") or [None]
        return values[0]

    images = [
        {
            "series": value(i, SERIES_UID),
            "sop": value(i, SOP_UID),
            "number": value(i, INSTANCE_NUMBER) or 0,
        }
        for i in metadata or []
        if value(i, SERIES_UID) and value(i, SOP_UID) and value(i, ROWS)
    ]
    images.sort(key=lambda i: (i["series"], int(i["number"] or 0)))
    return images[:MAX_IMAGES]


async def _report(request: Request, uid: str) -> dict[str, Any] | None:
    try:
        return await api_of(request).call(
            request.state.session, "GET", f"/api/studies/{quote(uid)}/report"
        )
    except ApiProblem:
        return None


@router.get("/studies/{uid}/series/{series}/instances/{sop}/image")
async def image(request: Request, uid: str, series: str, sop: str) -> Response:
    """The instance rendered by WADO-RS, fetched with the user's token."""
    session = require_login(request)
    path = f"/dicomweb/studies/{quote(uid)}/series/{quote(series)}/instances/{quote(sop)}/rendered"
    return await _proxy(request, session, path, "image/png, image/jpeg;q=0.9")


@router.get("/studies/{uid}/download")
async def download(request: Request, uid: str) -> Response:
    session = require_login(request)
    return await _proxy(request, session, f"/api/studies/{quote(uid)}/download", "application/zip")


async def _proxy(request: Request, session: Any, path: str, accept: str) -> Response:
    api = api_of(request)
    context = api.stream(session, path, {"Accept": accept})
    response = await context.__aenter__()
    if response.status_code != 200:
        await context.__aexit__(None, None, None)
        return Response(status_code=response.status_code)
    headers = {"Cache-Control": NO_STORE}
    for name in ("content-type", "content-length", "content-disposition"):
        if name in response.headers:
            headers[name] = response.headers[name]

    async def body():
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await context.__aexit__(None, None, None)

    return StreamingResponse(body(), headers=headers)


@router.post("/studies/{uid}/report")
async def save_report(request: Request, uid: str) -> Response:
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    try:
        await api_of(request).call(
            session, "PUT", f"/api/studies/{quote(uid)}/report", json={"text": form.get("text", "")}
        )
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    else:
        flash(request, "study.report_saved")
    return redirect(_back(uid, form.get("bucket")))


@router.post("/studies/{uid}/forward")
async def forward(request: Request, uid: str) -> Response:
    """Forward the study to a PACS (`POST /api/studies/{uid}/forward`); the transfer's state
    is on the Access tab."""
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    try:
        transfer = await api_of(request).call(
            session,
            "POST",
            f"/api/studies/{quote(uid)}/forward",
            json={"pacs_id": form.get("pacs_id", "")},
        )
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    else:
        name = (transfer or {}).get("destination_name") or form.get("pacs_id", "")
        flash(request, "study.forwarded", name=name)
    return redirect(_back(uid, form.get("bucket")))


@router.post("/studies/{uid}/break-glass")
async def break_glass(request: Request, uid: str) -> Response:
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    try:
        await api_of(request).call(
            session,
            "POST",
            f"/api/studies/{quote(uid)}/break-glass",
            json={"reason": form.get("reason", "")},
        )
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    return redirect(_back(uid, None))


@router.post("/studies/{uid}/otp")
async def request_otp(request: Request, uid: str) -> Response:
    """Ask for the SMS code of the share (two-factor)."""
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    bucket = form.get("bucket", "")
    try:
        await api_of(request).call(session, "POST", f"/api/shares/{quote(bucket)}/otp")
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
    else:
        flash(request, "otp.sent")
        session.pending.setdefault("otp_sent", set()).add(bucket)
    return redirect(_back(uid, bucket))


@router.post("/studies/{uid}/otp/verify")
async def verify_otp(request: Request, uid: str) -> Response:
    session = await checked(request)
    require_login(request)
    form = await read_form(request)
    bucket = form.get("bucket", "")
    try:
        await api_of(request).call(
            session,
            "POST",
            f"/api/shares/{quote(bucket)}/otp/verify",
            json={"code": form.get("code", "").strip()},
        )
    except ApiProblem as problem:
        flash_problem(request, problem.detail)
        session.pending.setdefault("otp_sent", set()).add(bucket)
    else:
        flash(request, "otp.verified")
        deadline = asyncio.get_running_loop().time() + OTP_SETTLE_S
        session.pending.setdefault("otp_verified", {})[uid] = deadline
    return redirect(_back(uid, bucket))


def _back(uid: str, bucket: str | None) -> str:
    return f"/studies/{quote(uid)}" + (f"?bucket={quote(bucket)}" if bucket else "")
