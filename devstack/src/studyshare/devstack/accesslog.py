"""The gateway's request metrics, from nginx's access log.

nginx sends one syslog datagram per proxied request (`nginxconf.METRICS_FORMAT`:
`|upstream|status|seconds to the response head|`) to a UDP port on 127.0.0.1 where the
gateway's Python app counts it for `/metrics`.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Histogram

from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

REQUESTS = Counter(
    "studyshare_gateway_requests_total", "Requests through the gateway", ["upstream", "status"]
)
LATENCY = Histogram(
    "studyshare_gateway_upstream_seconds", "Time to the upstream's response head", ["upstream"]
)


def record(line: bytes) -> None:
    """Count one access-log line (the syslog header before the first `|` is ignored)."""
    fields = line.decode("utf-8", "replace").rstrip().split("|")
    if len(fields) < 4 or not fields[1]:
        return
    upstream, status, header_time = fields[1], fields[2], fields[3]
    REQUESTS.labels(upstream, status).inc()
    # `0.004`, `-` when no head came, or `0.001, 0.004` when nginx tried twice
    last = header_time.rsplit(",", 1)[-1].strip()
    try:
        LATENCY.labels(upstream).observe(float(last))
    except ValueError:
        pass


class AccessLogProtocol(asyncio.DatagramProtocol):
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            record(data)
        except Exception:  # a metric is never worth the gateway
            log.exception("gateway.access_log_unreadable")
