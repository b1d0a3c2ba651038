"""TOTP second factor (RFC 6238, 30 s steps) that never accepts the same time step twice."""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp

ISSUER = "StudyShare"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def matching_step(secret: str, code: str, now: datetime, last_used_step: int | None) -> int | None:
    """The time step `code` belongs to (within one step either side, pyotp `valid_window=1`),
    provided it is later than the last step already used; None otherwise."""
    totp = pyotp.TOTP(secret)
    code = code.strip()
    if not totp.verify(code, for_time=now, valid_window=1):
        return None
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            if last_used_step is not None and step <= last_used_step:
                return None
            return step
    return None
