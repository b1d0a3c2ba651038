"""Route dependencies shared by every study-store router.

`StudyAccess` resolves the caller's `AccessDecision` for the `{study_uid}` of the route and
refuses (403/404/423, problem+json with the rule) when images may not be seen; routes then check
`decision.report`, `decision.download` and `decision.anonymized` themselves, and register the
access with `AccessLogDep.record(decision, principal, action)`.

The DICOMweb read routes take `DicomReader` / `ReaderStudyAccess` instead: the same, but a
viewer token (`domain.viewer`) is accepted there too, and decided by the same access model.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.access_policy.decision import AccessDecision
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import CurrentPrincipal, bearer_token, current_principal
from studyshare.plumbing.errors import RuleViolation
from studyshare.plumbing.eventstore import EventStore
from studyshare.study_store.adapters.access_model import InMemoryAccessModel
from studyshare.study_store.adapters.viewer_tokens import ViewerTokens, is_viewer_token
from studyshare.study_store.domain.access_rules import refuse
from studyshare.study_store.service_layer.access_log import AccessLog
from studyshare.study_store.settings import StudyStoreSettings


async def study_access(
    study_uid: str, principal: CurrentPrincipal, request: Request
) -> AccessDecision:
    """Ask the in-memory access model (installed on `app.state.access_model`); refuse when the
    caller may not see the images, the refusal registered in the study logging first."""
    decision = request.app.state.access_model.decide(principal, study_uid)
    request.state.access_decision = decision
    try:
        refuse(decision)
    except RuleViolation as refusal:
        refused = getattr(getattr(request.app.state, "access_log", None), "refused", None)
        if refused is not None:
            action = requested_action(request.method, request.url.path)
            await refused(decision, principal, action, type(refusal).__name__)
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


def _model(request: Request) -> InMemoryAccessModel:
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
AccessModelDep = Annotated[InMemoryAccessModel, Depends(_model)]
AccessLogDep = Annotated[AccessLog, Depends(_access_log)]
EventStoreDep = Annotated[EventStore, Depends(_store)]
DatabaseDep = Annotated[AsyncDatabase, Depends(_db)]
SettingsDep = Annotated[StudyStoreSettings, Depends(_settings)]
