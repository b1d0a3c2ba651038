"""The `/api/studies` routes of the access half: overview, details, report, reference numbers,
break-the-glass. Every access is registered in the study logging (`AccessLog`)."""

from __future__ import annotations

import asyncio
import heapq
import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import CurrentPrincipal, CurrentUser
from studyshare.plumbing.http import problem_responses
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.adapters.report_archive import ReportArchive
from studyshare.study_store.domain.anonymize import AnonymizationKey
from studyshare.study_store.domain.exceptions import (
    AccessDecisionsUnavailable,
    InvalidReportBody,
    UnsupportedReportType,
)
from studyshare.study_store.domain.report import ReportFormat
from studyshare.study_store.entrypoints.dependencies import (
    AccessLogDep,
    AccessModelDep,
    DatabaseDep,
    EventStoreDep,
    SettingsDep,
    Stores,
    StudyAccess,
)
from studyshare.study_store.entrypoints.models import (
    AccessView,
    BreakTheGlassRequest,
    BreakTheGlassResult,
    BucketView,
    IssueReferenceNumber,
    Pincode,
    ReferenceNumberList,
    ReferenceNumberView,
    RegeneratedReferenceNumbers,
    ReportText,
    ReportVersion,
    ReportView,
    StudyDetail,
    StudyList,
    StudySummary,
    aware_utc,
)
from studyshare.study_store.service_layer import break_glass as break_glass_handler
from studyshare.study_store.service_layer import reference_numbers as refs
from studyshare.study_store.service_layer import reports
from studyshare.study_store.service_layer.retrieval import shown_series

router = APIRouter(prefix="/api/studies", tags=["studies"])

REFUSALS = problem_responses(401, 403, 404, 422, 423, 503)


# -- helpers ---------------------------------------------------------------------------------


def _date(raw: str | None) -> date | None:
    return date.fromisoformat(raw) if raw else None


async def _message_state(
    model: AccessModel, principal: AccessClaims, uid: str, buckets: list[dict[str, Any]]
) -> Literal["none", "unread", "read"]:
    """Unread until the caller opened the study after the newest share carrying a message."""
    shared = [aware_utc(b.get("shared_at")) for b in buckets if b.get("has_message")]
    if not shared:
        return "none"
    read_at = await model.opened_at(principal.sub, uid)
    newest = max((t for t in shared if t is not None), default=None)
    if read_at is None or (newest is not None and newest > read_at):
        return "unread"
    return "read"


def _key(decision: AccessDecision, study: dict[str, Any], secret: str) -> AnonymizationKey | None:
    """The anonymized share's key (its UIDs, dates and pseudonym), None when not anonymized."""
    if not decision.anonymized:
        return None
    return AnonymizationKey.for_share(
        secret, decision.bucket_id or "", decision.anonymous_number or "0", study.get("patient_id")
    )


async def _summary(
    model: AccessModel,
    principal: AccessClaims,
    study: dict[str, Any],
    decision: AccessDecision,
    secret: str,
    cls: type[StudySummary] = StudySummary,
    **extra: Any,
) -> Any:
    uid = study["study_uid"]
    buckets = await model.usable_buckets(principal, uid)
    message_state = await _message_state(model, principal, uid, buckets)
    anonymized = decision.anonymized
    labels = [b["label"] for b in buckets if b.get("label")]
    key = _key(decision, study, secret)
    if key is not None:  # PS3.15 Annex E: no accession number or description, shifted date
        return cls(
            study_uid=key.uid(uid),
            anonymized_name=f"{decision.anonymous_number} Anonymous",
            study_date=key.iso_date(_date(study.get("study_date"))),
            modalities=list(study.get("modalities", ())),
            label=labels[0] if labels else None,
            urgent=any(b.get("urgent") for b in buckets),
            message_state=message_state,
            valid_until=decision.valid_until,
            access=AccessView.of(decision),
            **extra,
        )
    return cls(
        study_uid=uid,
        patient_id=None if anonymized else study.get("patient_id"),
        patient_initials=None if anonymized else study.get("patient_initials"),
        anonymized_name=f"{decision.anonymous_number} Anonymous" if anonymized else None,
        description=study.get("description") or "",
        study_date=_date(study.get("study_date")),
        accession_number=study.get("accession_number"),
        modalities=list(study.get("modalities", ())),
        department_id=study.get("department_id"),
        label=labels[0] if labels else None,
        urgent=any(b.get("urgent") for b in buckets),
        message_state=message_state,
        valid_until=decision.valid_until,
        has_report=bool(study.get("report_version")) and decision.report != "none",
        access=AccessView.of(decision),
        **extra,
    )


def _listed_by(study: dict[str, Any], decision: AccessDecision, secret: str) -> tuple[str, str]:
    """A study's place in the list: by the date and UID the caller sees (an anonymized
    share's real date would show through the dates of its neighbours, and with it the
    share's date shift)."""
    key = _key(decision, study, secret)
    if key is None:
        return study.get("study_date") or "", study["study_uid"]
    return key.place(study.get("study_date") or "", study["study_uid"])


def _matches(
    study: dict[str, Any],
    decision: AccessDecision,
    patient_id: str | None,
    date_from: date | None,
    date_to: date | None,
    modality: str | None,
    q: str | None,
    secret: str = "",
) -> bool:
    if patient_id is not None and (decision.anonymized or study.get("patient_id") != patient_id):
        return False
    study_date = _date(study.get("study_date"))
    key = _key(decision, study, secret)
    if key is not None:  # filters match what an anonymized share shows: shifted dates, no text
        study_date = key.iso_date(study_date)
        if q:
            return False
    if date_from is not None and (study_date is None or study_date < date_from):
        return False
    if date_to is not None and (study_date is None or study_date > date_to):
        return False
    if modality is not None and modality.upper() not in study.get("modalities", ()):
        return False
    if q:
        fields = [study.get("description"), study.get("accession_number")]
        if not decision.anonymized:
            fields += [study.get("patient_initials"), study.get("patient_id")]
        needle = q.casefold()
        if not any(f and needle in str(f).casefold() for f in fields):
            return False
    return True


# -- overview and details --------------------------------------------------------------------


@router.get(
    "",
    response_model=StudyList,
    summary="Every study the caller may open (own department's, shared with them or their "
    "groups, their group practice colleagues'), filterable and paginated",
    responses=problem_responses(401, 422, 503),
)
async def list_studies(
    principal: CurrentPrincipal,
    model: AccessModelDep,
    settings: SettingsDep,
    patient_id: Annotated[str | None, Query(max_length=64)] = None,
    date_from: date | None = None,
    date_to: date | None = None,
    modality: Annotated[str | None, Query(max_length=16)] = None,
    q: Annotated[str | None, Query(max_length=200, description="free text")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    access_log: AccessLogDep = None,  # type: ignore[assignment]
) -> StudyList:
    if not model.fresh:
        raise AccessDecisionsUnavailable("access decisions are temporarily unavailable")
    secret = settings.anonymization_secret
    page = Page(offset + limit)

    def consider(study: dict[str, Any], decision: AccessDecision | None) -> None:
        if "study_uid" in study and _matches(
            study, decision or _CLEAR, patient_id, date_from, date_to, modality, q, secret
        ):
            page.add(_listed_by(study, decision or _CLEAR, secret), (study, decision))

    # Studies certainly open and never anonymized (own department's, own, or all for the
    # service desk) are streamed and filtered on their metadata, decided only when on the page
    # shown: a department's whole archive costs no decision, and is never held whole.
    certain = model.certain(await model.subject(principal))
    async for study in model.certain_studies(principal):
        consider(study, None)
    others = sorted(await model.candidate_studies(principal))
    decisions = await model.decide_many(principal, others)
    for uid, study in (await model.studies(others)).items():
        if not model.is_certain(certain, study) and decisions[uid].images:
            consider(study, decisions[uid])
    items = []
    listed: list[AccessDecision] = []
    for study, decision in page.slice(offset):
        decision = decision or await model.decide(principal, study["study_uid"])
        if decision.images:
            items.append(await _summary(model, principal, study, decision, secret))
            listed.append(decision)
    if access_log is not None:  # each study on the page is registered as listed
        await asyncio.gather(*(access_log.record(d, principal, "list") for d in listed))
    return StudyList(items=items, total=page.total, offset=offset, limit=limit)


class Page:
    """The newest `size` rows of many, by key, and how many there were (memory: `size`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.total = 0
        self._heap: list[tuple[Any, int, Any]] = []

    def add(self, key: Any, row: Any) -> None:
        self.total += 1
        entry = (key, self.total, row)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, entry)
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def slice(self, offset: int) -> list[Any]:
        """Rows `offset` onwards, newest first."""
        return [row for _, _, row in sorted(self._heap, key=lambda e: e[0], reverse=True)][offset:]


_CLEAR = AccessDecision(
    study_uid="",
    images=True,
    report="read",
    download=False,
    anonymized=False,
    via="department",
    reason="",
)


@router.get(
    "/{study_uid}",
    response_model=StudyDetail,
    summary="A study's details and the caller's access decision (registered as a view)",
    responses=REFUSALS,
)
async def get_study(
    study_uid: str,
    decision: StudyAccess,
    principal: CurrentPrincipal,
    model: AccessModelDep,
    access_log: AccessLogDep,
    settings: SettingsDep,
    stores: Stores,
) -> StudyDetail:
    study = await model.study(study_uid)
    if study is None:  # gone since the decision (a new generation of the read model)
        raise AccessDecisionsUnavailable("access decisions are temporarily unavailable")
    buckets = await model.usable_buckets(principal, study_uid)
    series = await shown_series(stores, decision, study_uid)
    detail = await _summary(
        model,
        principal,
        study,
        decision,
        settings.anonymization_secret,
        StudyDetail,
        patient_birth_date=None if decision.anonymized else _date(study.get("patient_birth_date")),
        series_count=len(series),
        instance_count=sum(s.get("instance_count", 0) for s in series),
        report_version=study.get("report_version") if decision.report != "none" else None,
        received_at=None if decision.anonymized else study.get("received_at"),  # a real date
        buckets=[
            BucketView(
                bucket_id=b["bucket_id"],
                access_level=b.get("access_level", "images"),
                label=b.get("label"),
                urgent=bool(b.get("urgent")),
                has_message=bool(b.get("has_message")),
                valid_until=b.get("valid_until"),
                unlimited=bool(b.get("unlimited")),
                anonymize=bool(b.get("anonymize")),
                two_factor=bool(b.get("two_factor")),
            )
            for b in buckets
        ],
    )
    await access_log.record(decision, principal, "view")
    if principal.kind == "user":
        model.mark_read(principal.sub, study_uid, datetime.now(UTC))
    return detail


# -- report ----------------------------------------------------------------------------------


def _version(doc: dict[str, Any]) -> ReportVersion:
    return ReportVersion(
        version=doc["version"],
        format=doc["format"],
        content_type=doc["content_type"],
        size=doc["size"],
        author_id=doc["author_id"],
        updated_at=doc["updated_at"],
    )


async def _report_view(db, doc: dict[str, Any]) -> ReportView:
    versions = await reports.report_versions(ReportArchive(db), doc["study_uid"])
    text = doc["content"].decode("utf-8", "replace") if doc["format"] == "text" else None
    return ReportView(
        **_version(doc).model_dump(),
        study_uid=doc["study_uid"],
        text=text,
        content_url=f"/api/studies/{doc['study_uid']}/report/content?version={doc['version']}",
        versions=[_version(v) for v in versions],
    )


#: a report version; the database holds 64-bit integers, so a larger one cannot exist
ReportVersionQuery = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


@router.get(
    "/{study_uid}/report",
    response_model=ReportView,
    summary="The latest report (or `version`), if the access allows reading it",
    responses=REFUSALS,
)
async def get_report(
    study_uid: str,
    decision: StudyAccess,
    principal: CurrentPrincipal,
    db: DatabaseDep,
    access_log: AccessLogDep,
    version: ReportVersionQuery = None,
) -> ReportView:
    doc = await reports.read_report(ReportArchive(db), decision, version)
    await access_log.record(decision, principal, "report_read")
    return await _report_view(db, doc)


@router.get(
    "/{study_uid}/report/content",
    summary="The report document itself (text/plain or application/pdf)",
    responses={
        **REFUSALS,
        200: {
            "content": {"text/plain": {}, "application/pdf": {}},
            "description": "The report",
        },
    },
    response_class=Response,
)
async def get_report_content(
    study_uid: str,
    decision: StudyAccess,
    principal: CurrentPrincipal,
    db: DatabaseDep,
    access_log: AccessLogDep,
    version: ReportVersionQuery = None,
) -> Response:
    doc = await reports.read_report(ReportArchive(db), decision, version)
    await access_log.record(decision, principal, "report_read")
    media = doc["content_type"] + ("; charset=utf-8" if doc["format"] == "text" else "")
    return Response(bytes(doc["content"]), media_type=media)


async def _report_body(request: Request) -> tuple[ReportFormat, bytes]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if media == "application/json":
        try:
            text = ReportText.model_validate_json(body).text
        except (ValidationError, json.JSONDecodeError) as exc:
            raise InvalidReportBody('expected {"text": "..."}') from exc
        return "text", text.encode()
    if media == "text/plain":
        try:
            return "text", body.decode("utf-8").encode()
        except UnicodeDecodeError as exc:
            raise InvalidReportBody("a text report must be UTF-8") from exc
    if media == "application/pdf":
        return "pdf", body
    raise UnsupportedReportType("send application/json {text}, text/plain or application/pdf")


@router.put(
    "/{study_uid}/report",
    response_model=ReportView,
    summary="Write a new version of the report (text or PDF), if the access allows writing",
    responses=problem_responses(401, 403, 404, 409, 413, 415, 422, 423),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ReportText.model_json_schema()},
                "text/plain": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def put_report(
    study_uid: str,
    request: Request,
    decision: StudyAccess,
    principal: CurrentPrincipal,
    db: DatabaseDep,
    store: EventStoreDep,
    access_log: AccessLogDep,
    model: AccessModelDep,
) -> ReportView:
    from studyshare.study_store.domain.report import check_write

    check_write(decision)
    fmt, content = await _report_body(request)
    doc, event = await reports.write_report(
        ReportArchive(db), store, decision, principal, fmt, content
    )
    model.apply_local([event])
    await access_log.record(decision, principal, "report_write")
    return await _report_view(db, doc)


# -- reference numbers -----------------------------------------------------------------------


async def _ref_view(model: AccessModel, doc: dict[str, Any] | None) -> ReferenceNumberView:
    if doc is None:  # issued here a moment ago: folded in at once, so only a replay drops it
        raise AccessDecisionsUnavailable("access decisions are temporarily unavailable")
    complies = await model.reference_complies(doc)
    now = model.clock()
    valid_from, valid_to = doc.get("valid_from"), doc.get("valid_to")
    in_time = (valid_from is None or aware_utc(valid_from) <= now) and (
        valid_to is None or now < aware_utc(valid_to)
    )
    return ReferenceNumberView(
        reference_id=doc["reference_id"],
        reference_number=model.number_of(doc),
        study_uid=doc.get("study_uid", ""),
        issued_at=doc.get("issued_at"),
        issued_by=doc.get("issued_by"),
        valid_from=valid_from,
        valid_to=valid_to,
        complies_with_rule=complies,
        usable=complies and not doc.get("revoked") and in_time,
        revoked=bool(doc.get("revoked")),
        revoked_at=doc.get("revoked_at"),
        pincode_required=bool(doc.get("pincode_required")),
        pincode_set=bool(doc.get("pincode_set")),
        pincode_failures=doc.get("pincode_failures", 0),
        pincode_consecutive_failures=doc.get("pincode_consecutive_failures", 0),
        has_mobile=bool(doc.get("has_mobile")),
    )


@router.get(
    "/{study_uid}/reference-numbers",
    response_model=ReferenceNumberList,
    summary="The study's patient reference numbers (department staff and service desk)",
    responses=problem_responses(401, 403, 404, 422),
)
async def list_reference_numbers(
    study_uid: str, principal: CurrentUser, model: AccessModelDep
) -> ReferenceNumberList:
    await refs.manager(model, principal, study_uid)
    docs = await model.references_of(study_uid)
    return ReferenceNumberList(items=[await _ref_view(model, d) for d in docs])


@router.post(
    "/{study_uid}/reference-numbers",
    response_model=ReferenceNumberView,
    status_code=201,
    summary="Issue a reference number per the sending department's complexity rule",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def issue_reference_number(
    study_uid: str,
    body: IssueReferenceNumber,
    principal: CurrentUser,
    model: AccessModelDep,
    store: EventStoreDep,
    settings: SettingsDep,
) -> ReferenceNumberView:
    ref_id = await refs.issue(
        store,
        model,
        principal,
        study_uid,
        secret=settings.reference_number_secret,
        valid_from=body.valid_from,
        valid_to=body.valid_to,
        patient_mobile=body.patient_mobile,
        reference_number=body.reference_number,
    )
    return await _ref_view(model, await model.reference(ref_id))


@router.post(
    "/{study_uid}/reference-numbers/regenerate",
    response_model=RegeneratedReferenceNumbers,
    summary="Replace numbers that break the current rule (and issue one if none is usable)",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def regenerate_reference_numbers(
    study_uid: str,
    principal: CurrentUser,
    model: AccessModelDep,
    store: EventStoreDep,
    settings: SettingsDep,
) -> RegeneratedReferenceNumbers:
    issued = await refs.regenerate(
        store, model, principal, study_uid, secret=settings.reference_number_secret
    )
    return RegeneratedReferenceNumbers(
        issued=[await _ref_view(model, await model.reference(n)) for n in issued]
    )


@router.delete(
    "/{study_uid}/reference-numbers/{reference_id}",
    status_code=204,
    summary="Revoke a reference number: it no longer opens the study",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def revoke_reference_number(
    study_uid: str,
    reference_id: str,
    principal: CurrentUser,
    model: AccessModelDep,
    store: EventStoreDep,
) -> Response:
    await refs.revoke(store, model, principal, study_uid, reference_id)
    return Response(status_code=204)


@router.put(
    "/{study_uid}/reference-numbers/{reference_id}/pincode",
    status_code=204,
    summary="Set the pincode handed to the patient after payment (kept only sealed to identity)",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def set_pincode(
    study_uid: str,
    reference_id: str,
    body: Pincode,
    principal: CurrentUser,
    model: AccessModelDep,
    store: EventStoreDep,
    settings: SettingsDep,
) -> Response:
    await refs.set_pincode(
        store,
        model,
        principal,
        study_uid,
        reference_id,
        body.pincode,
        settings.pincode_seal_public_key,
    )
    return Response(status_code=204)


# -- break-the-glass -------------------------------------------------------------------------


@router.post(
    "/{study_uid}/break-glass",
    response_model=BreakTheGlassResult,
    status_code=201,
    summary="Open a study without a grant, giving a reason, as the study department's policy "
    "allows: time-limited, logged and alerted",
    description="Refused (403 `BreakTheGlassNotAllowed`) when the department's "
    "`break_the_glass` policy does not let the caller, for auditors, over a revoked, locked or "
    "expired bucket the caller was in, and, with the very same answer, for an unknown study.",
    responses=problem_responses(401, 403, 409, 422),
)
async def break_glass(
    study_uid: str,
    body: BreakTheGlassRequest,
    principal: CurrentPrincipal,
    model: AccessModelDep,
    store: EventStoreDep,
    settings: SettingsDep,
) -> BreakTheGlassResult:
    envelope = await break_glass_handler.break_glass(
        store,
        model,
        principal,
        study_uid,
        body.reason,
        timedelta(hours=settings.break_glass_hours),
    )
    decision = await model.decide(principal, study_uid)
    return BreakTheGlassResult(
        study_uid=study_uid,
        valid_until=envelope.payload["valid_until"],
        event_id=str(envelope.event_id),
        access=AccessView.of(decision),
    )
