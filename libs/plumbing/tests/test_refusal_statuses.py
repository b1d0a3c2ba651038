"""The edge answers a refusal with the status of its kind (issue 18, point 2): the domain's
refusals carry none, `http.status_of` walks the refusal's MRO against one table."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter

from studyshare.plumbing.auth import SessionEnded, SessionStatusUnknown
from studyshare.plumbing.bodylimit import RequestBodyTooLarge
from studyshare.plumbing.errors import (
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    RuleViolation,
    TooLarge,
    TooManyAttempts,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from studyshare.plumbing.eventstore import ConcurrencyConflict
from studyshare.plumbing.http import STATUS, create_app, refused, status_of
from studyshare.plumbing.settings import ServiceSettings


class NoSuchPatient(NotFound):
    pass


class SentElsewhere(RuleViolation):
    title = "Sent elsewhere"


class SentFarAway(SentElsewhere):
    pass


def test_each_kind_answers_with_its_status() -> None:
    assert {kind: status_of(kind) for kind in STATUS} == {
        RuleViolation: 422,
        NotFound: 404,
        Forbidden: 403,
        Unauthorized: 401,
        Conflict: 409,
        Locked: 423,
        TooManyAttempts: 429,
        TooLarge: 413,
        UnsupportedMedia: 415,
        Unavailable: 503,
    }


def test_a_rule_answers_with_its_kind() -> None:
    assert status_of(NoSuchPatient("no such patient")) == 404
    assert status_of(SessionEnded("logged out")) == 401
    assert status_of(SessionStatusUnknown("lease lapsed")) == 503
    assert status_of(RequestBodyTooLarge("too large")) == 413
    assert status_of(ConcurrencyConflict("version taken")) == 409


def test_a_service_table_names_its_own_rules_and_their_subclasses() -> None:
    statuses = {SentElsewhere: 421}
    assert status_of(SentElsewhere("elsewhere")) == 422
    assert status_of(SentElsewhere("elsewhere"), statuses) == 421
    assert status_of(SentFarAway, statuses) == 421
    assert status_of(NoSuchPatient, statuses) == 404


async def test_the_app_answers_a_refusal_with_the_mapped_status() -> None:
    router = APIRouter()

    @router.get("/elsewhere")
    async def elsewhere() -> None:
        raise SentFarAway("the study went elsewhere")

    app = create_app(
        ServiceSettings(),
        title="refusals",
        routers=[router],
        statuses={SentElsewhere: 421},
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/elsewhere")
    assert response.status_code == 421
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "status": 421,
        "title": "Sent elsewhere",
        "detail": "the study went elsewhere",
        "rule": "SentFarAway",
    }


def test_a_refusal_that_names_a_status_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match="carries no HTTP status"):

        class Gone(NotFound):
            status = 410


def test_a_refusal_that_says_how_long_to_wait_answers_with_retry_after() -> None:
    """One place for every service (each once had its own handler per such refusal)."""
    waits = refused(TooManyAttempts("try later", retry_after_s=42))
    assert waits.status_code == 429 and waits.headers["retry-after"] == "42"
    assert "retry-after" not in refused(TooManyAttempts("try later")).headers
