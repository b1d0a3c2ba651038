"""Keeps a `SessionRevocations` current from identity's list of ended sessions, as a follower.

Every API process but identity's long-polls `GET /internal/session-ends` on identity (an
internal route, see `plumbing.internal`): each poll says how far this process has read
(`after`, the sequence number of the last end it holds) and returns the ends after it, at
once when there are some, else when one arrives or `wait_s` passed. Identity records each
poll as a beat of this follower (`followers.FollowerRegistry`), and a logout (refresh-token
reuse, deactivation, password reset) answers only once every follower has read its end or
has certainly stopped answering. This process answers only while its lease holds: its last
successful poll was sent less than `lease_s` ago. After that every token is refused (503,
rule `SessionStatusUnknown`) until identity answers again, so a process cut off from identity
cannot accept a logged-out token. A first poll (no `after`) returns every end identity still
keeps, so a new process knows them all before it answers anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import socket
import time
import uuid

from studyshare.plumbing.followers import Lease
from studyshare.plumbing.internal import InternalClient
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.revocations import Ending, SessionRevocations

log = get_logger(__name__)

SESSION_ENDS_PATH = "/internal/session-ends"


def follower_id(service: str) -> str:
    """A name for this process among the followers: service, host, pid and a random tag."""
    return f"{service}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SessionEndFeed:
    def __init__(
        self,
        client: InternalClient,
        revocations: SessionRevocations,
        *,
        follower: str,
        lease_s: float = 10.0,
        wait_s: float = 2.0,
        retry_s: float = 0.25,
        path: str = SESSION_ENDS_PATH,
    ) -> None:
        if wait_s >= lease_s:
            raise ValueError("a poll must come back well within the lease (wait_s < lease_s)")
        self.client = client
        self.revocations = revocations
        self.follower = follower
        self.lease = Lease(lease_s)
        self.wait_s = wait_s
        self.retry_s = retry_s
        self.path = path
        self.position: int | None = None
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def fresh(self) -> bool:
        return self.lease.fresh

    async def poll(self) -> int:
        """One long poll; returns how many ends it brought."""
        started = self.lease.clock()
        params: dict[str, str | float] = {
            "follower": self.follower,
            "wait_s": self.wait_s,
            "lease_s": self.lease.duration_s,
        }
        if self.position is not None:
            params["after"] = self.position
        response = await self.client.request(
            "GET", self.path, params=params, timeout=self.wait_s + self.lease.duration_s
        )
        response.raise_for_status()
        body = response.json()
        for record in body["ends"]:
            self.revocations.fold(Ending.from_record(record))
        first = self.position is None
        self.position = int(body["position"])
        self.lease.renew(started)
        if first:
            log.info("session_ends.following", position=self.position, ends=len(body["ends"]))
        return len(body["ends"])

    async def run(self) -> None:
        """Poll for ever; a failure is retried soon (the lease runs out meanwhile)."""
        while True:
            try:
                await self.poll()
                if self.failures:
                    log.info("session_ends.reconnected", failures=self.failures)
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                if self.failures in (1, 10) or self.failures % 100 == 0:
                    log.warning(
                        "session_ends.unavailable",
                        error=f"{type(exc).__name__}: {exc}",
                        failures=self.failures,
                        lease_fresh=self.fresh,
                    )
                await asyncio.sleep(min(self.retry_s * self.failures, 2.0))

    def start(self) -> None:
        self._task = asyncio.create_task(
            self.run(), name="session-end-feed", context=contextvars.Context()
        )

    async def stop(self) -> None:
        """Stop answering, stop polling, and leave identity's followers (best effort)."""
        self.lease.lapse()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.client.request(
                "DELETE", f"{self.path}/followers/{self.follower}", timeout=2.0
            )
        await self.client.close()

    async def ready(self, wait_s: float = 2.0) -> None:
        """Readiness: the lease holds (waits up to `wait_s` for a first poll)."""
        deadline = time.monotonic() + wait_s
        while not self.fresh:
            if time.monotonic() > deadline:
                raise RuntimeError("ended sessions not yet known from identity")
            await asyncio.sleep(0.05)
