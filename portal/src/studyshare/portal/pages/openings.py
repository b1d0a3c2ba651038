"""For a patient logged in with a reference number: who opened their study, and when (the GDPR
right of access, issue 16 point 14). The study is the one the patient's token opens; the page
asks nothing else, so no other patient's data can be shown."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from studyshare.portal.adapters.public_api import ApiProblem
from studyshare.portal.web import api_of, redirect, render, require_login

router = APIRouter(include_in_schema=False)


@router.get("/my-study/openings")
async def openings(request: Request) -> Response:
    session = require_login(request)
    if not session.patient:
        return redirect("/")
    try:
        answer = await api_of(request).call(session, "GET", "/api/audit/my-study/openings")
    except ApiProblem as problem:
        return render(request, "openings.html", problem.status, answer=None, error=problem.detail)
    return render(request, "openings.html", answer=answer, error=None)
