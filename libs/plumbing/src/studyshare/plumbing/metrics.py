"""Prometheus figures every process shares beyond its own: readiness as the probes see it.

The HTTP figures are in `plumbing.http`, the relay's in `plumbing.relay`, the projections' in
`plumbing.projection` and the consumer lag in `plumbing.lag`. The alerts and dashboards of
`deploy/k8s/base/monitoring/` use only names a process serves on `/metrics` (a test reads them).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

READY = Gauge("studyshare_ready", "1 while the last /readyz answered ready, else 0")
READINESS_CHANGES = Counter(
    "studyshare_readiness_changes_total", "Times /readyz changed its answer (ready or not)"
)
_last: dict[str, bool] = {}


def record_readiness(ready: bool) -> None:
    """Called by every `/readyz`: a flapping process shows as changes in a short time."""
    previous = _last.get("ready")
    if previous is not None and previous != ready:
        READINESS_CHANGES.inc()
    _last["ready"] = ready
    READY.set(1 if ready else 0)
