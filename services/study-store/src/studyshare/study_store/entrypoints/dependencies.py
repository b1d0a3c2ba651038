"""Route dependencies shared by every study-store router.

`StudyAccess` resolves the caller's `AccessDecision` for the `{study_uid}` of the route and
refuses (403/404/423, problem+json with the rule) when images may not be seen (a caller with
no way into an existing study is answered as for an unknown one: `hide_from_outsiders`);
routes then check `decision.report`, `decision.download` and `decision.anonymized`
themselves, and register the access with `AccessLogDep.record(decision, principal, action)`.

The DICOMweb read routes take `DicomReader` / `ReaderStudyAccess` instead: the same, but a
viewer token (`domain.viewer`) is accepted there too, and decided by the same access model.
They take the DICOM stores as `Stores`, register each retrieval with `record_access` and build
the URLs of their answers on `base_url`.
"""

from __future__ import annotations

import inspect
import re
from typing import Annotated

from fastapi import Depends, Request
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import CurrentPrincipal, bearer_token, current_principal
from studyshare.plumbing.errors import RuleViolation
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.logging import get_logger
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.adapters.viewer_tokens import ViewerTokens, is_viewer_token
from studyshare.study_store.domain.access_rules import refuse
from studyshare.study_store.service_layer.access_log import AccessLog
from studyshare.study_store.service_layer.break_glass import hide_from_outsiders
from studyshare.study_store.service_layer.retrieval import DicomStores
from studyshare.study_store.settings import StudyStoreSettings

log = get_logger(__name__)


async def study_access(
    study_uid: str, principal: CurrentPrincipal, request: Request
) -> AccessDecision:
    """Ask the access model (installed on `app.state.access_model`); refuse when the
    caller may not see the images, the refusal registered in the study logging first."""
    model: AccessModel = request.app.state.access_model
    decision = await model.decide(principal, study_uid)
    request.state.access_decision = decision
    try:
        refuse(decision)
    except RuleViolation as refusal:
        refused = getattr(getattr(request.app.state, "access_log", None), "refused", None)
        if refused is not None:  # the study logging keeps the true refusal
            action = requested_action(request.method, request.url.path)
            await refused(decision, principal, action, type(refusal).__name__)
        await hide_from_outsiders(model, principal, decision)
        raise
    return decision


async def dicom_reader(request: Request) -> AccessClaims:
    """The caller of a DICOMweb read: an access token, or a viewer token of this store (its
    holder's session still live: a logout ends the viewer at once too)."""
    token = bearer_token(request)
    tokens: ViewerTokens | None = getattr(request.app.state, "viewer_tokens", None)
    if token is None or tokens is None or not is_viewer_token(token):
        return await current_principal(request)
    claims = tokens.verify(token)
    verifier = getattr(request.app.state, "verifier", None)
    if verifier is not None:
        verifier.check_live(claims, "viewer token")
    request.state.principal = claims
    return claims


DicomReader = Annotated[AccessClaims, Depends(dicom_reader)]


async def reader_study_access(
    study_uid: str, principal: DicomReader, request: Request
) -> AccessDecision:
    """`study_access` for a DICOMweb read (a viewer token is narrowed to its scope)."""
    return await study_access(study_uid, principal, request)


def requested_action(method: str, path: str) -> str:
    """The access action a study route stands for (as the study logging names it)."""
    if path.endswith("/report"):
        return "report_read" if method in ("GET", "HEAD") else "report_write"
    if path.endswith("/download"):
        return "download"
    if path.endswith("/forward"):
        return "forward"
    if path.endswith("/metadata"):
        return "metadata"
    if "/rendered" in path or "/thumbnail" in path:
        return "rendered"
    if path.startswith("/dicomweb/") and not path.endswith(("/series", "/instances")):
        return "instances"
    return "view"


def _model(request: Request) -> AccessModel:
    return request.app.state.access_model


def _access_log(request: Request) -> AccessLog:
    return request.app.state.access_log


def _store(request: Request) -> EventStore:
    return request.app.state.event_store


def _db(request: Request) -> AsyncDatabase:
    return request.app.state.db


def _settings(request: Request) -> StudyStoreSettings:
    return request.app.state.settings


StudyAccess = Annotated[AccessDecision, Depends(study_access)]
ReaderStudyAccess = Annotated[AccessDecision, Depends(reader_study_access)]
AccessModelDep = Annotated[AccessModel, Depends(_model)]
AccessLogDep = Annotated[AccessLog, Depends(_access_log)]
EventStoreDep = Annotated[EventStore, Depends(_store)]
DatabaseDep = Annotated[AsyncDatabase, Depends(_db)]
SettingsDep = Annotated[StudyStoreSettings, Depends(_settings)]


async def dicom_stores(request: Request) -> DicomStores:
    return request.app.state.dicom


Stores = Annotated[DicomStores, Depends(dicom_stores)]


async def record_access(
    request: Request, decision: AccessDecision, principal: AccessClaims, action: str
) -> None:
    """Register the access for the study logging (the access log coalesces)."""
    recorder = getattr(request.app.state, "access_log", None)
    if recorder is None:
        log.warning("access_log.missing", action=action)
        return
    result = recorder.record(decision, principal, action)
    if inspect.isawaitable(result):
        await result


#: a host (and port) as the gateway or the Ingress controller forwards it
FORWARDED_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def base_url(request: Request) -> str:
    """Where the caller reached the store: the gateway's (or the Ingress controller's)
    `X-Forwarded-Host` and `-Proto` when given, else the request's own. URLs in answers
    (RetrieveURL, BulkDataURI) are built on it, so a browser behind the gateway can follow
    them."""
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    if host and FORWARDED_HOST.fullmatch(host) and proto in ("http", "https"):
        return f"{proto}://{host}"
    return str(request.base_url).rstrip("/")
