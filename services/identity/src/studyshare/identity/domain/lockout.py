"""Brute-force protection as a pure rule: after `threshold` consecutive failures a key (an
account name, a reference number or a source address) is locked, each further failure doubling
the delay; a count left alone for `decay_s` (counted from the last failure, or from the end of
the lock) is forgotten."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5
    base_s: float = 30.0
    max_s: float = 3600.0
    decay_s: float = 900.0

    def delay_after(self, failures: int) -> float:
        """Seconds locked after the `failures`-th consecutive failure (0: not locked)."""
        if failures < self.threshold:
            return 0.0
        return min(self.max_s, self.base_s * 2 ** (failures - self.threshold))

    def locked_until(self, failures: int, at: datetime) -> datetime | None:
        delay = self.delay_after(failures)
        return at + timedelta(seconds=delay) if delay else None

    def forgotten_before(self, now: datetime) -> datetime:
        """Failures (and ended locks) at or before this instant no longer count."""
        return now - timedelta(seconds=self.decay_s)

    def forgets(
        self, last_failure_at: datetime | None, locked_until: datetime | None, now: datetime
    ) -> bool:
        """Whether a count whose last failure was at `last_failure_at` (and whose lock, if any,
        ends at `locked_until`) has decayed: it starts again from zero."""
        cutoff = self.forgotten_before(now)
        if last_failure_at is None or last_failure_at > cutoff:
            return False
        return locked_until is None or locked_until <= cutoff

    def attempts_left(self, failures: int) -> int:
        """Guesses that may still be evaluated before the next lock: up to the threshold, and
        one per ended lock after it."""
        return max(self.threshold - failures, 1 if failures >= self.threshold else 0)
