"""Internal routes admit only named services with their own credential; a command's answer
says whether what it narrowed reached every follower; the session-end feed (against a fake
identity) keeps the revocations and its lease, and the verifier refuses when the lease lapsed."""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter
from pydantic import SecretStr

from studyshare.plumbing import propagation
from studyshare.plumbing.auth import JWKSVerifier, SessionEnded, SessionStatusUnknown
from studyshare.plumbing.errors import Locked
from studyshare.plumbing.http import create_app
from studyshare.plumbing.internal import (
    CALLER_HEADER,
    InternalCallerNotAdmitted,
    InternalClient,
    check_caller,
    internal_caller,
)
from studyshare.plumbing.revocations import SessionRevocations
from studyshare.plumbing.session_feed import SessionEndFeed
from studyshare.plumbing.settings import ServiceSettings
from studyshare.plumbing.tokens import TokenSigner


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_a_named_service_with_its_development_credential_is_admitted_outside_production():
    assert check_caller("test", {}, ("share",), "share", bearer("dev-internal-share")) == "share"


@pytest.mark.parametrize(
    ("caller", "authorization"),
    [
        ("share", bearer("dev-internal-notify")),  # another service's credential
        ("notify", bearer("dev-internal-notify")),  # not admitted to this route
        (None, bearer("dev-internal-share")),  # no name
        ("share", None),  # no credential
        ("share", "Basic dev-internal-share"),
    ],
)
def test_anyone_else_is_refused(caller, authorization):
    with pytest.raises(InternalCallerNotAdmitted):
        check_caller("test", {}, ("share",), caller, authorization)


def test_configured_credentials_replace_the_development_ones():
    callers = {"share": SecretStr("s3cret-share")}
    assert check_caller("test", callers, ("share",), "share", bearer("s3cret-share")) == "share"
    with pytest.raises(InternalCallerNotAdmitted):
        check_caller("test", callers, ("share",), "share", bearer("dev-internal-share"))


def test_production_admits_no_development_credential_and_needs_one_per_caller():
    with pytest.raises(InternalCallerNotAdmitted):
        check_caller("production", {}, ("share",), "share", bearer("dev-internal-share"))
    dev = {"share": SecretStr("dev-internal-share")}
    with pytest.raises(InternalCallerNotAdmitted):
        check_caller("production", dev, ("share",), "share", bearer("dev-internal-share"))
    real = {"share": SecretStr("k" * 32)}
    assert check_caller("production", real, ("share",), "share", bearer("k" * 32)) == "share"


def test_production_settings_refuse_a_follower_without_identity_or_with_dev_credentials():
    base = {
        "environment": "production",
        "kafka_enable_idempotence": True,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_username": "svc",
        "kafka_password": "pw",
        "otp_seal_public_key": "x" * 44,
    }
    with pytest.raises(ValueError, match="IDENTITY_INTERNAL_URL"):
        ServiceSettings(**base)
    with pytest.raises(ValueError, match="INTERNAL_TOKEN"):
        ServiceSettings(**base, identity_internal_url="http://identity-api")
    with pytest.raises(ValueError, match="development internal credentials"):
        ServiceSettings(
            **base, identity_internal_url="http://identity-api", internal_token="dev-internal-x"
        )
    with pytest.raises(
        ValueError, match=r"INTERNAL_CALLERS with the credentials of \['identity', 'share'\]"
    ):
        ServiceSettings(
            **base,
            service_name="study-store",
            identity_internal_url="http://identity-api",
            internal_token="t" * 32,
        )


def app_with(router: APIRouter):
    settings = ServiceSettings(
        service_name="svc", environment="test", session_revocation_feed=False
    )
    return create_app(settings, title="t", routers=[router])


async def test_the_answer_says_whether_every_wait_was_confirmed():
    router = APIRouter()

    @router.post("/confirmed")
    async def confirmed() -> dict:
        propagation.note(True)
        return {}

    @router.post("/partly")
    async def partly() -> dict:
        propagation.note(True)
        propagation.note(False)
        return {}

    @router.post("/locked")
    async def locked() -> dict:
        propagation.note(True)
        raise Locked("now locked")

    @router.post("/nothing")
    async def nothing() -> dict:
        return {}

    app = app_with(router)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        assert (await c.post("/confirmed")).headers[propagation.HEADER] == "true"
        assert (await c.post("/partly")).headers[propagation.HEADER] == "false"
        refused = await c.post("/locked")
        assert refused.status_code == 423 and refused.headers[propagation.HEADER] == "true"
        assert propagation.HEADER not in (await c.post("/nothing")).headers


async def test_an_internal_route_answers_only_its_callers():
    router = APIRouter()

    @router.get("/internal/thing")
    async def thing(caller: Annotated[str, internal_caller("share")]) -> dict:
        return {"caller": caller}

    app = app_with(router)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        ok = await c.get(
            "/internal/thing",
            headers={CALLER_HEADER: "share", "authorization": bearer("dev-internal-share")},
        )
        assert ok.json() == {"caller": "share"}
        refused = await c.get("/internal/thing")
        assert refused.status_code == 401
        assert refused.json()["rule"] == "InternalCallerNotAdmitted"


class FakeIdentity:
    """Answers the session-end polls from a list; `down` makes it fail."""

    def __init__(self) -> None:
        self.ends: list[dict] = []
        self.down = False
        self.polls: list[dict] = []
        self.left: list[str] = []

    async def handler(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)  # a held poll, shortened
        if self.down:
            return httpx.Response(503)
        if request.method == "DELETE":
            self.left.append(request.url.path.rsplit("/", 1)[-1])
            return httpx.Response(204)
        params = dict(request.url.params)
        self.polls.append(params)
        after = int(params["after"]) if "after" in params else 0
        ends = [e for e in self.ends if e["seq"] > after]
        return httpx.Response(
            200, json={"position": max([after, *(e["seq"] for e in ends)]), "ends": ends}
        )


def feed_for(identity: FakeIdentity, revocations: SessionRevocations, lease_s: float):
    client = InternalClient(
        "http://identity",
        "share",
        "dev-internal-share",
        transport=httpx.MockTransport(identity.handler),
    )
    return SessionEndFeed(
        client, revocations, follower="share:test", lease_s=lease_s, wait_s=0.05, retry_s=0.02
    )


async def test_the_session_end_feed_folds_ends_and_keeps_its_lease():
    identity = FakeIdentity()
    identity.ends.append(
        {
            "seq": 1,
            "kind": "session",
            "key": "ses_1",
            "at": 1.0e9,
            "reason": "the session was logged out",
        }
    )
    revocations = SessionRevocations(keep_s=10**10)
    feed = feed_for(identity, revocations, lease_s=0.4)
    signer = TokenSigner()
    verifier = JWKSVerifier.from_jwks(signer.jwks())
    verifier.revocations, verifier.available = revocations, lambda: feed.fresh
    ended = signer.sign(sub="usr_1", kind="user", sid="ses_1")
    other = signer.sign(sub="usr_1", kind="user", sid="ses_2")

    with pytest.raises(SessionStatusUnknown):
        await verifier.verify(other)  # nothing read yet: no token is taken
    assert await feed.poll() == 1 and feed.position == 1 and feed.fresh
    assert "after" not in identity.polls[0], "the first poll asks for every kept end"
    with pytest.raises(SessionEnded):
        await verifier.verify(ended)
    assert (await verifier.verify(other)).sid == "ses_2"

    feed.start()
    await asyncio.sleep(0.3)
    assert identity.polls[-1]["after"] == "1" and feed.fresh
    identity.down = True
    await asyncio.sleep(0.6)
    assert not feed.fresh, "cut off from identity for longer than its lease"
    with pytest.raises(SessionStatusUnknown):
        await verifier.verify(other)
    identity.down = False
    back = asyncio.get_running_loop().time() + 2.0  # the retry waits 0.02 s per failure
    while not feed.fresh and asyncio.get_running_loop().time() < back:
        await asyncio.sleep(0.02)
    assert feed.fresh, "fresh again once identity answers"
    await feed.stop()
    assert not feed.fresh and identity.left == ["share:test"]
