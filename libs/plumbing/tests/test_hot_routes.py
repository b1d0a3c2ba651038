"""Hot routes answer what they can without FastAPI's stack; the full app answers the rest."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY

from studyshare.plumbing.auth import CurrentPrincipal, current_principal
from studyshare.plumbing.errors import NotFound
from studyshare.plumbing.hot import hot
from studyshare.plumbing.http import create_app
from studyshare.plumbing.settings import ServiceSettings


class NoSuchThing(NotFound):
    pass


def lookup(name: str, sub: str) -> dict[str, str]:
    if name == "missing":
        raise NoSuchThing("there is no such thing")
    return {"name": name, "by": sub}


def app_with_hot_route(served_hot: list[str]):
    router = APIRouter()

    async def hot_thing(request, name: str):
        principal = await current_principal(request)
        body = lookup(name, principal.sub)
        served_hot.append(name)
        return JSONResponse(body)

    @router.get("/things/{name}")
    @hot(hot_thing)
    async def thing(name: str, principal: CurrentPrincipal):
        return lookup(name, principal.sub)

    return create_app(ServiceSettings(environment="test"), title="hot", routers=[router])


def handled(status: str) -> float:
    labels = {"method": "GET", "route": "/things/{name}", "status": status}
    return REGISTRY.get_sample_value("studyshare_http_requests_total", labels) or 0.0


async def test_hot_route_answers_and_refusals_go_to_the_full_app(test_tokens):
    served_hot: list[str] = []
    app = app_with_hot_route(served_hot)
    test_tokens.install(app)
    ok_before, missing_before = handled("200"), handled("404")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        user = test_tokens.user("usr_1")
        ok = await c.get("/things/a", headers={**user, "x-correlation-id": "corr-7"})
        assert ok.json() == {"name": "a", "by": "usr_1"}
        assert ok.headers["x-correlation-id"] == "corr-7"
        assert served_hot == ["a"]
        # no browser keeps an answer (images and metadata once stayed in the disk cache)
        assert ok.headers["cache-control"] == "no-store"
        missing = await c.get("/things/missing", headers=user)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["rule"] == "NoSuchThing"
        assert missing.headers["cache-control"] == "no-store", "the full app's answers too"
        assert missing.headers["x-correlation-id"]
        anonymous = await c.get("/things/a")
        assert anonymous.status_code == 401 and anonymous.json()["rule"] == "Unauthorized"
        assert served_hot == ["a"], "refusals are answered by the full app"
        head = await c.head("/things/b", headers=user)
        assert head.status_code == 405 and served_hot == ["a"], "HEAD: the full app answers"
    assert handled("200") == ok_before + 1, "counted once, under the route's template"
    assert handled("404") == missing_before + 1


async def test_a_hot_route_leaves_earlier_routes_their_paths(test_tokens):
    served_hot: list[str] = []

    async def hot_thing(request, name: str):
        served_hot.append(name)
        return JSONResponse({"name": name, "hot": True})

    router = APIRouter()

    @router.get("/things/special")
    async def special():
        return {"special": True}

    @router.get("/things/{name}")
    @hot(hot_thing)
    async def thing(name: str):
        return {"name": name}

    settings = ServiceSettings(environment="test")
    app = create_app(settings, title="hot", routers=[router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert (await c.get("/things/special")).json() == {"special": True}
        assert (await c.get("/things/a")).json() == {"name": "a", "hot": True}
    assert served_hot == ["a"]
    posting = APIRouter()

    @posting.post("/things/{name}")
    @hot(hot_thing)
    async def change(name: str):
        return {"name": name}

    with pytest.raises(RuntimeError, match="is not a GET route"):
        create_app(settings, title="hot", routers=[posting])


async def test_a_route_that_names_its_caching_keeps_it():
    router = APIRouter()

    @router.get("/public-keys")
    async def keys():
        return JSONResponse({"keys": []}, headers={"cache-control": "public, max-age=300"})

    app = create_app(ServiceSettings(environment="test"), title="keys", routers=[router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        answer = await c.get("/public-keys")
    assert answer.headers.get_list("cache-control") == ["public, max-age=300"]
