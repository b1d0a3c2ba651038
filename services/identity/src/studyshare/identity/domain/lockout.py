"""Brute-force protection as a pure rule: after `threshold` consecutive failures a key (an
account name or a source address) is locked, each further failure doubling the delay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5
    base_s: float = 30.0
    max_s: float = 3600.0

    def delay_after(self, failures: int) -> float:
        """Seconds locked after the `failures`-th consecutive failure (0: not locked)."""
        if failures < self.threshold:
            return 0.0
        return min(self.max_s, self.base_s * 2 ** (failures - self.threshold))

    def locked_until(self, failures: int, at: datetime) -> datetime | None:
        delay = self.delay_after(failures)
        return at + timedelta(seconds=delay) if delay else None
