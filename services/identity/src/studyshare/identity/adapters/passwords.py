"""argon2id hashing, off the event loop, with a dummy hash so unknown accounts cost the same."""

from __future__ import annotations

import asyncio
import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self.hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self.dummy_hash = self.hasher.hash("studyshare-dummy-password-never-valid")

    async def hash(self, secret: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, secret)

    async def verify(self, hashed: str | None, secret: str) -> bool:
        """True when `secret` matches; with no hash, spends the same time on the dummy."""
        return await asyncio.to_thread(self._verify, hashed or self.dummy_hash, secret, hashed)

    def _verify(self, hashed: str, secret: str, real: str | None) -> bool:
        try:
            ok = self.hasher.verify(hashed, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and real is not None


def token_digest(token: str) -> str:
    """Refresh tokens and one-time codes are stored as SHA-256 digests only."""
    return hashlib.sha256(token.encode()).hexdigest()
