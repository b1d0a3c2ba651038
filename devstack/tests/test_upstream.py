"""The gateway's lean upstream transport against a real upstream process."""

from __future__ import annotations

import sys

import httpx
import pytest

from studyshare.devstack.upstream import HttpToolsTransport
from studyshare.plumbing.infra import free_port

from .conftest import HERE, Processes, clean_env


def _start_upstream(processes: Processes, port: int) -> None:
    argv = [sys.executable, str(HERE / "upstream_app.py"), "identity", str(port)]
    processes.start(f"upstream-{port}-{len(processes.started)}", argv, port, clean_env())


async def test_reuses_connections_and_survives_an_upstream_restart(processes: Processes) -> None:
    port = free_port()
    _start_upstream(processes, port)
    transport = HttpToolsTransport()
    async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}") as c:
        for n in range(20):
            response = await c.get(f"/api/auth/echo/{n}", params={"q": "a b"})
            assert response.json()["path"] == f"/api/auth/echo/{n}"
            assert response.json()["query"] == "q=a+b"
        assert len(transport._idle[("127.0.0.1", port)]) == 1

        head = await c.head("/api/auth/echo/h")
        assert head.status_code in (200, 405)
        posted = await c.post("/api/auth/echo/p", content=b"x" * 100_000)
        assert posted.json()["body_bytes"] == 100_000

        # the idle connection now points at a dead process: a fresh one is used instead
        processes.started[-1].kill()
        _start_upstream(processes, port)
        assert (await c.get("/api/auth/echo/again")).status_code == 200


async def test_refused_connection_is_a_connect_error() -> None:
    transport = HttpToolsTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/x")
