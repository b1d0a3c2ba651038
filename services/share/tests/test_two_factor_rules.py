"""Unit tests of the two-factor rules of issue 15, point 2 (no infrastructure): a code opens
the bucket in the session that entered it, a new code voids the previous one, asking for codes
is rate-limited, and re-sharing needs the code (and no lock)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from studyshare.plumbing.http import status_of
from studyshare.share.domain import exceptions
from studyshare.share.domain.model import (
    Bucket,
    OTPRequestLimit,
    check_within_held,
    decide_share,
)

from .test_domain import NOW, bucket_from, ref, request

HOUR = timedelta(hours=1)


def two_factor_bucket(**kw) -> Bucket:
    return bucket_from(decide_share(request(two_factor=True, **kw), NOW))


def ask(bucket: Bucket, otp_id: str, at=NOW, limit: OTPRequestLimit | None = None) -> None:
    [requested] = bucket.request_otp(
        "usr_r", "usr_r", otp_id, "sealed", at + timedelta(minutes=5), "nl", at, limit
    )
    assert requested.requested_at == at
    bucket.apply(requested)


def enter(bucket: Bucket, otp_id: str, session_id: str | None = "ses_a", at=NOW) -> str:
    events = bucket.verify_otp("usr_r", "usr_r", otp_id, at, HOUR, session_id)
    for event in events:
        bucket.apply(event)
    return events[0].event_type


def test_a_code_opens_the_bucket_for_the_session_that_entered_it_only():
    bucket = two_factor_bucket()
    ask(bucket, "otp_1")
    assert enter(bucket, "otp_1", "ses_a") == "OTPVerified"
    assert bucket.verified_for("usr_r", "ses_a", NOW)
    assert not bucket.verified_for("usr_r", "ses_b", NOW)
    assert not bucket.verified_for("usr_r", None, NOW)
    assert not bucket.verified_for("usr_r", "ses_a", NOW + HOUR)


def test_a_new_code_voids_the_previous_one():
    bucket = two_factor_bucket()
    ask(bucket, "otp_1")
    ask(bucket, "otp_2")
    assert enter(bucket, "otp_1") == "OTPFailed"
    assert enter(bucket, "otp_2") == "OTPVerified"


def test_asking_for_codes_is_rate_limited_per_window():
    bucket = two_factor_bucket()
    limit = OTPRequestLimit(max_requests=3, window=timedelta(minutes=10))
    for minute in range(3):
        ask(bucket, f"otp_{minute}", NOW + timedelta(minutes=minute), limit)
    with pytest.raises(exceptions.OTPRequestedTooOften) as refused:
        ask(bucket, "otp_x", NOW + timedelta(minutes=3), limit)
    assert status_of(refused.value) == 429  # the edge answers the kind TooManyAttempts
    assert refused.value.retry_after_s == 7 * 60 + 1  # the first request leaves the window
    ask(bucket, "otp_later", NOW + timedelta(minutes=10, seconds=1), limit)


def test_a_recipient_reshares_only_after_entering_the_code_in_this_session():
    parent = two_factor_bucket(allow_further_sharing=True)
    child = request(
        bucket_id="bkt_2", sender_id="usr_r", recipients=(ref("usr_x"),), two_factor=True
    )
    with pytest.raises(exceptions.TwoFactorVerificationRequired):
        check_within_held(child, parent, {"usr_r"}, session_id="ses_a", now=NOW)
    ask(parent, "otp_1")
    enter(parent, "otp_1", "ses_a")
    check_within_held(child, parent, {"usr_r"}, session_id="ses_a", now=NOW)
    with pytest.raises(exceptions.TwoFactorVerificationRequired):
        check_within_held(child, parent, {"usr_r"}, session_id="ses_b", now=NOW)
    with pytest.raises(exceptions.TwoFactorVerificationRequired):
        check_within_held(child, parent, {"usr_r"}, session_id="ses_a", now=NOW + 2 * HOUR)


def test_nobody_reshares_from_a_locked_bucket():
    parent = two_factor_bucket(allow_further_sharing=True, recipients=(ref("usr_r"), ref("usr_o")))
    ask(parent, "otp_1")
    enter(parent, "otp_1", "ses_a")
    for _ in range(5):
        for event in parent.verify_otp("usr_o", "usr_o", None, NOW, HOUR, "ses_o"):
            parent.apply(event)
    assert parent.locked
    child = request(
        bucket_id="bkt_2", sender_id="usr_r", recipients=(ref("usr_x"),), two_factor=True
    )
    with pytest.raises(exceptions.BucketIsLocked):
        check_within_held(child, parent, {"usr_r"}, session_id="ses_a", now=NOW)
