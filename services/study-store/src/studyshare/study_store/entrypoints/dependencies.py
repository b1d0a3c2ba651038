"""Route dependencies shared by every study-store router.

`StudyAccess` resolves the caller's `AccessDecision` for the `{study_uid}` of the route and
refuses (403/404) when images may not be seen; routes then check `decision.report`,
`decision.download` and `decision.anonymized` themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from studyshare.plumbing.auth import CurrentPrincipal
from studyshare.study_store.domain.access import AccessDecision


async def study_access(study_uid: str, principal: CurrentPrincipal, request: Request
                       ) -> AccessDecision:
    """Ask the in-memory access model (installed on `app.state.access_model`)."""
    decision = request.app.state.access_model.decide(principal, study_uid)
    request.state.access_decision = decision
    return decision


StudyAccess = Annotated[AccessDecision, Depends(study_access)]
