"""Guesses at a secret (password, TOTP code, reference number, birth date, pincode, SMS code)
pass the failure counters first: each counter admits the guess and counts it as a failure in
one atomic step (`adapters.stores.Throttle.admit`), so the secret is evaluated only for admitted
guesses, and a refused guess writes nothing (no event, no count)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from studyshare.identity.adapters.stores import Attempt
from studyshare.identity.domain.lockout import LockoutPolicy
from studyshare.identity.service_layer.context import Identity


@dataclass(frozen=True)
class Gate:
    """One counter a guess must pass; `refusal(retry_after_s)` is raised while it is locked."""

    key: str
    policy: LockoutPolicy
    refusal: Callable[[int], Exception]


def retry_after(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


async def admit(app: Identity, gates: Sequence[Gate], now: datetime) -> list[Attempt]:
    """Pass every gate in turn (counted in advance), or give back what was counted and raise
    the refusal of the first locked one."""
    attempts: list[Attempt] = []
    for gate in gates:
        result = await app.throttle.admit(gate.key, now, gate.policy)
        if isinstance(result, datetime):
            await release(app, attempts)
            raise gate.refusal(retry_after(result, now))
        attempts.append(result)
    return attempts


async def failed(
    app: Identity, attempts: Sequence[Attempt], now: datetime
) -> list[datetime | None]:
    """The guess was wrong: until when each key is now locked (None: not locked)."""
    return [await app.throttle.failed(attempt, now) for attempt in attempts]


async def release(app: Identity, attempts: Sequence[Attempt]) -> None:
    """The request was no guess after all (or not a wrong one): give the counts back."""
    for attempt in attempts:
        await app.throttle.release(attempt)
