"""`POST /api/studies/{study_uid}/viewer-token`: a viewer token for the image viewer.

Issued to a caller who may see the study's images now, for that study and the grant the
decision goes through (`domain.viewer`); only an access token of identity gets one (a viewer
token cannot renew itself). The portal asks again before it ends while the viewer is open.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from studyshare.contracts.anonymized import bucket_key, remap_uid
from studyshare.plumbing.auth import CurrentPrincipal
from studyshare.plumbing.http import problem_responses
from studyshare.study_store.adapters.viewer_tokens import ViewerTokens
from studyshare.study_store.domain.viewer import ViewerScope
from studyshare.study_store.entrypoints.dependencies import SettingsDep, StudyAccess
from studyshare.study_store.entrypoints.models import (
    ViewerToken,
)

router = APIRouter(prefix="/api/studies", tags=["studies"])


@router.post(
    "/{study_uid}/viewer-token",
    summary="A short-lived token for the image viewer: this study's DICOMweb reads only, "
    "through the caller's current access to it (refused at the next request once it ends)",
    responses=problem_responses(401, 403, 404, 423, 503),
)
async def issue_viewer_token(
    study_uid: str,
    decision: StudyAccess,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    request: Request,
) -> ViewerToken:
    tokens: ViewerTokens = request.app.state.viewer_tokens
    token, expires_in = tokens.issue(principal, ViewerScope.of(decision))
    seen = decision.study_uid
    if decision.anonymized:
        seen = remap_uid(bucket_key(settings.anonymization_secret, decision.bucket_id or ""), seen)
    return ViewerToken(token=token, expires_in=expires_in, study_uid=seen)
