"""Unit tests of the security alerts list (point 7)."""

from __future__ import annotations

from datetime import timedelta

from studyshare.audit.domain.alerts import bursts, single_event_alerts
from studyshare.audit.domain.entries import build_entry
from studyshare.contracts.events import identity

from .scenario import Story, full_story


def failed_logins(minutes_apart: float, n: int, user: str = "usr_x", ip: str | None = None):
    s = Story()
    for k in range(n):
        s.add(
            identity.LoginFailed(
                attempt_id=f"att_{s.tag}_{k}", user_id=user, reason="bad_credentials", source_ip=ip
            ),
            f"att_{s.tag}_{k}",
            step=minutes_apart,
        )
    return [build_entry(e) for e in s.events]


def test_five_failed_logins_for_one_account_within_ten_minutes_is_a_burst():
    (alert,) = bursts(failed_logins(2, 5), 5, timedelta(minutes=10))
    assert alert["kind"] == "failed_logins" and alert["key"] == "user_id"
    assert alert["key_value"] == "usr_x" and alert["count"] == 5


def test_four_failures_or_five_spread_over_more_than_ten_minutes_are_not():
    assert bursts(failed_logins(1, 4), 5, timedelta(minutes=10)) == []
    assert bursts(failed_logins(3, 5), 5, timedelta(minutes=10)) == []


def test_a_long_burst_is_one_alert_and_a_source_ip_burst_counts_across_accounts():
    (alert,) = bursts(failed_logins(1, 12), 5, timedelta(minutes=10))
    assert alert["count"] == 12
    entries = []
    for user in ("usr_a", "usr_b", "usr_c", "usr_d", "usr_e"):
        entries += failed_logins(0.1, 1, user=user, ip="203.0.113.1")
    (alert,) = bursts(entries, 5, timedelta(minutes=10))
    assert alert["key"] == "source_ip" and alert["key_value"] == "203.0.113.1"


def test_bucket_lock_break_the_glass_and_otp_bursts_are_alerts():
    story, ids = full_story()
    entries = [build_entry(e) for e in story.events]
    kinds = {a["kind"] for a in single_event_alerts(entries)}
    assert kinds == {"bucket_locked", "break_the_glass"}
    burst_kinds = {(a["kind"], a["key_value"]) for a in bursts(entries)}
    assert ("failed_otps", ids["bucket"]) in burst_kinds
    assert ("failed_logins", ids["alice"]) in burst_kinds
    assert ("failed_logins", ids["mallory_ip"]) in burst_kinds


def test_failed_patient_logins_burst_per_reference_id_never_the_number():
    s = Story()
    ref_id = "q" * 32  # identity names the number the patient typed by its reference id
    for n in range(5):
        s.add(
            identity.PatientLoginFailed(
                reference_id=ref_id, reason="birth_date", failed_attempts=n + 1
            ),
            f"pat_{ref_id}",
            f"pat_{ref_id}",
            kind="patient",
        )
    (alert,) = bursts([build_entry(e) for e in s.events], 5, timedelta(minutes=10))
    assert (alert["kind"], alert["key"], alert["key_value"]) == (
        "failed_patient_logins",
        "reference_id",
        ref_id,
    )
