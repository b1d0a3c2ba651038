"""A proxy's idle upstream connection must never be closed by the service first.

The gateway (and ingress-nginx in Kubernetes) keeps idle keep-alive connections to the services
and reuses them; if the service closed them sooner (uvicorn's default is 5 s), a request sent
just as the service closes one fails with a 502, and a POST cannot be retried. So the services
keep an idle connection longer than the proxy does (`STUDYSHARE_HTTP_KEEP_ALIVE_S`).
"""

from __future__ import annotations

import re
import socket
import time
from urllib.parse import urlsplit

from studyshare.devstack.platform import LocalPlatform

#: longer than uvicorn's default keep-alive (5 s), shorter than ours
IDLE_S = 6.5


def exchange(conn: socket.socket, host: str) -> bytes:
    """One GET /healthz on `conn`: the whole answer (head and `Content-Length` body), or what
    arrived before the service closed the connection."""
    conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    answer = b""
    while True:
        head, sep, body = answer.partition(b"\r\n\r\n")
        if sep:
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                return answer
        chunk = conn.recv(4096)
        if not chunk:
            return answer
        answer += chunk


def test_a_service_keeps_an_idle_connection_longer_than_the_gateway_does(
    platform: LocalPlatform,
) -> None:
    url = urlsplit(platform.api_url("identity"))
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        assert exchange(conn, url.netloc).startswith(b"HTTP/1.1 200")
        time.sleep(IDLE_S)
        assert exchange(conn, url.netloc).startswith(b"HTTP/1.1 200"), (
            "the service closed an idle connection the gateway would still reuse"
        )
