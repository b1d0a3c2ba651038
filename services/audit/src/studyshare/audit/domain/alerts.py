"""Security alerts: single alarming events, and bursts of failures (pure, no I/O)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from studyshare.audit.domain.access import when

# Failure events and the keys a burst is counted on ("one account or one source"); a patient
# reference number by its reference id (the log never holds the number).
BURST_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "LoginFailed": (("failed_logins", "user_id"), ("failed_logins", "source_ip")),
    "OTPFailed": (("failed_otps", "bucket_id"), ("failed_otps", "recipient_id")),
    "PatientLoginFailed": (
        ("failed_patient_logins", "reference_id"),
        ("failed_patient_logins", "source_ip"),
    ),
    "PincodeFailed": (("failed_pincodes", "reference_id"),),
}
BURST_EVENT_TYPES = tuple(BURST_KEYS)


def single_event_alerts(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Bucket locks, break-the-glass and account locks: each one an alert."""
    return [
        {
            "kind": e["alert"],
            "at": when(e["occurred_at"]),
            "until": when(e["occurred_at"]),
            "count": 1,
            "key": None,
            "key_value": e["payload"].get("bucket_id") or e["payload"].get("user_id"),
            "study_uids": list(e.get("study_uids") or []),
            "entry_ids": [str(e["_id"])],
            "summary": e.get("summary", e["event_type"]),
        }
        for e in entries
        if e.get("alert")
    ]


def bursts(
    entries: Iterable[Mapping[str, Any]],
    threshold: int = 5,
    window: timedelta = timedelta(minutes=10),
) -> list[dict[str, Any]]:
    """At least `threshold` failures for one key within `window`; overlapping windows merge."""
    series: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for e in entries:
        for kind, key in BURST_KEYS.get(e["event_type"], ()):
            value = e["payload"].get(key)
            if isinstance(value, str) and value:
                series[(kind, key, value)].append(e)
    alerts = []
    for (kind, key, value), items in series.items():
        items.sort(key=lambda e: when(e["occurred_at"]))
        times = [when(e["occurred_at"]) for e in items]
        start = 0
        current: tuple[int, int] | None = None
        found: list[tuple[int, int]] = []
        for end in range(len(times)):
            while times[end] - times[start] > window:
                start += 1
            if end - start + 1 >= threshold:
                if current is not None and start <= current[1]:
                    current = (current[0], end)
                else:
                    if current is not None:
                        found.append(current)
                    current = (start, end)
        if current is not None:
            found.append(current)
        for first, last in found:
            burst = items[first : last + 1]
            studies = sorted({u for e in burst for u in e.get("study_uids") or []})
            alerts.append(
                {
                    "kind": kind,
                    "at": times[first],
                    "until": times[last],
                    "count": len(burst),
                    "key": key,
                    "key_value": value,
                    "study_uids": studies,
                    "entry_ids": [str(e["_id"]) for e in burst],
                    "summary": f"{len(burst)} {burst[0]['event_type']} for {key} {value} "
                    f"within {int((times[last] - times[first]).total_seconds())}s",
                }
            )
    return alerts
