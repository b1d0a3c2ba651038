import time

import httpx
import pytest
from fastapi import APIRouter

from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.auth import CurrentPrincipal, JWKSVerifier, require_roles
from studyshare.plumbing.errors import NotFound, Unauthorized
from studyshare.plumbing.http import create_app, kafka_ready, mongo_ready
from studyshare.plumbing.infra import free_port
from studyshare.plumbing.settings import ServiceSettings
from studyshare.plumbing.tokens import TokenSigner


async def test_tokens_are_verified_against_a_jwks_url(jwks_server):
    signer, url, hits = jwks_server
    verifier = JWKSVerifier(url)
    claims = await verifier.verify(signer.sign(sub="usr_1", roles=["physician"]))
    assert isinstance(claims, AccessClaims)
    assert claims.sub == "usr_1" and claims.roles == ("physician",)
    await verifier.verify(signer.sign(sub="usr_2"))
    assert len(hits) == 1, "the key set is cached"


async def test_a_remembered_token_still_expires_to_the_second(jwks_server):
    signer, url, _ = jwks_server
    now = [time.time()]
    verifier = JWKSVerifier(url, clock=lambda: now[0])
    token = signer.sign(sub="usr_1", ttl_s=60)
    claims = await verifier.verify(token)
    now[0] = claims.exp - 0.5
    assert (await verifier.verify(token)).sub == "usr_1"
    now[0] = claims.exp
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(token)
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(token)


async def test_only_the_exact_verified_token_is_remembered(jwks_server):
    signer, url, _ = jwks_server
    verifier = JWKSVerifier(url, max_remembered=2)
    token = signer.sign(sub="usr_1")
    await verifier.verify(token)
    head, payload, _ = token.split(".")
    forged = TokenSigner(kid=signer.kid).sign(sub="usr_1")
    with pytest.raises(Unauthorized, match="not valid"):
        await verifier.verify(".".join([head, payload, forged.split(".")[2]]))
    others = [signer.sign(sub=f"usr_{i}") for i in range(3)]
    for other in others:
        await verifier.verify(other)
    assert len(verifier._verified) == 2, "the oldest are forgotten"
    assert (await verifier.verify(token)).sub == "usr_1"


async def test_expired_foreign_and_garbage_tokens_are_refused(jwks_server):
    signer, url, _ = jwks_server
    verifier = JWKSVerifier(url)
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(signer.sign(sub="u", ttl_s=-10))
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(TokenSigner().sign(sub="u"))
    with pytest.raises(Unauthorized, match="malformed"):
        await verifier.verify("not-a-jwt")


class NoSuchThing(NotFound):
    pass


def demo_app(settings, readiness=()):
    router = APIRouter()

    @router.get("/things/{name}")
    async def thing(name: str, principal: CurrentPrincipal):
        if name == "missing":
            raise NoSuchThing("there is no such thing")
        return {"name": name, "by": principal.sub}

    @router.get("/broken")
    async def broken():
        raise OverflowError("patient Doe^Jane: MongoDB can only handle up to 8-byte ints")

    @router.get("/desk", dependencies=[require_roles("service_desk")])
    async def desk():
        return {"ok": True}

    return create_app(settings, title="demo", routers=[router], readiness=readiness)


async def test_http_app_answers_problem_json_with_the_rule_and_echoes_correlation(test_tokens):
    app = demo_app(ServiceSettings(environment="test"))
    test_tokens.install(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        ok = await c.get(
            "/things/a", headers={**test_tokens.user("usr_1"), "x-correlation-id": "corr-42"}
        )
        assert ok.json() == {"name": "a", "by": "usr_1"}
        assert ok.headers["x-correlation-id"] == "corr-42"
        missing = await c.get("/things/missing", headers=test_tokens.user("usr_1"))
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["rule"] == "NoSuchThing"
        anonymous = await c.get("/things/a")
        assert anonymous.status_code == 401 and anonymous.json()["rule"] == "Unauthorized"
        physician = await c.get("/desk", headers=test_tokens.user("usr_1", "physician"))
        assert physician.status_code == 403
        desk = await c.get("/desk", headers=test_tokens.user("usr_2", "service_desk"))
        assert desk.status_code == 200


async def test_a_client_correlation_id_is_taken_only_in_a_safe_format(test_tokens):
    """Issue 15, point 11: the client's id reaches every log line and event envelope of the
    request, so only a short token of letters, digits and `._:-` is taken; else a new one."""
    import re

    app = demo_app(ServiceSettings(environment="test"))
    test_tokens.install(app)
    fresh = re.compile(r"^[0-9a-f-]{36}$")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        for safe in ("corr-42", "e2e-0b7f2c1e-3d5a-4c2b-9f1e-2a6b8c9d0e1f", "trace:1.2_3"):
            r = await c.get(
                "/things/a", headers={**test_tokens.user("u"), "x-correlation-id": safe}
            )
            assert r.headers["x-correlation-id"] == safe
        for unsafe in ("a" * 65, "x y", "<b>", "-leading", "a\tb", b"\xfc"):
            r = await c.get(
                "/things/a", headers={**test_tokens.user("u"), "x-correlation-id": unsafe}
            )
            assert fresh.match(r.headers["x-correlation-id"]), unsafe


async def test_readyz_needs_broker_and_database_and_metrics_are_exposed(real_infra, mongo_db):
    settings = real_infra.settings()
    live = demo_app(settings, [mongo_ready(mongo_db), kafka_ready(settings.kafka_bootstrap)])
    dead = demo_app(settings, [kafka_ready(f"127.0.0.1:{free_port()}")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(live), base_url="http://t") as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/readyz")).status_code == 200
        await c.get("/things/x")
        metrics = (await c.get("/metrics")).text
        assert (
            'studyshare_http_requests_total{method="GET",route="/things/{name}",status="401"}'
            in metrics
        )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(dead), base_url="http://t") as c:
        refused = await c.get("/readyz")
        assert refused.status_code == 503


def test_openapi_documents_every_refusal_as_problem_json():
    app = demo_app(ServiceSettings(environment="test"))
    schema = app.openapi()
    operation = schema["paths"]["/things/{name}"]["get"]
    assert set(operation["responses"]["422"]["content"]) == {"application/problem+json"}
    assert "default" in operation["responses"]
    assert "Problem" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_an_unexpected_error_is_a_500_problem_without_its_text():
    """Regression (found by fuzzing the gateway): a bug answered `text/plain`, while every
    operation documents its refusals as problem+json."""
    app = demo_app(ServiceSettings(environment="test"))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/broken", headers={"x-correlation-id": "corr-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 500 and "corr-500" in body["detail"]
    assert "Doe" not in response.text and "MongoDB" not in response.text


async def test_commands_are_logged_at_info_and_successful_reads_at_debug():
    from structlog.testing import capture_logs

    router = APIRouter()

    @router.get("/things")
    async def things() -> dict:
        return {}

    @router.post("/things", status_code=201)
    async def add_thing() -> dict:
        return {}

    app = create_app(ServiceSettings(), title="demo", routers=[router])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        with capture_logs() as logs:
            assert (await client.get("/things")).status_code == 200
            assert (await client.post("/things")).status_code == 201
            assert (await client.get("/nothing")).status_code == 404
    handled = [
        (e["method"], e["status"], e["log_level"]) for e in logs if e["event"] == "request.handled"
    ]
    assert handled == [("GET", 200, "debug"), ("POST", 201, "info"), ("GET", 404, "info")]
