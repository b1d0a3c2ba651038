"""Session revocations: which login sessions, and whose access, identity ended lately.

Every service verifies access tokens itself (JWKS), so a token would stay good until it
expires. Identity ends a session on logout (`LoggedOut`) and on refresh-token reuse
(`RefreshTokenReuseDetected`), and the tokens issued until then of an account when the account
is deactivated (`UserDeactivated`), its password changes (`PasswordChanged`: identity also ends
the account's other sessions, or all of them on a reset by the service desk) or its roles and
memberships change (`UserRolesChanged`: a token carries them, so one issued before would act
with the old ones; the session lives on and its refresh token gives a token with the new ones).
`SessionRevocations` folds those events into two small maps and answers, per token, whether
it is still good. Pure: no I/O. Two feeds keep it current: `session_feed.SessionEndFeed`
(identity's list of ends, long-polled; a command that ends something waits for it) and
`revocation_feed.RevocationFeed` (`identity.events` on Kafka, a second path).

An ended session or account is kept `keep_s` seconds (the longest lifetime of an access
token): after that every token issued before the end has expired anyway, so it is pruned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.tokens import AccessClaims

#: the identity events that end sessions, and the reason a refused token is given
SESSION_ENDING = {
    "LoggedOut": "the session was logged out",
    "RefreshTokenReuseDetected": "the session was revoked (its refresh token was reused)",
}
ACCESS_ENDING = {
    "UserDeactivated": "the account was deactivated",
    "PasswordChanged": "the account's password was reset",
    "UserRolesChanged": "the account's roles changed: refresh the token or log in again",
}
CHANGED_BY_ITS_USER = "the account's password was changed"
EVENT_TYPES = frozenset(SESSION_ENDING) | frozenset(ACCESS_ENDING)


@dataclass(frozen=True)
class Ending:
    """One end: a session (`key` is its id) or an account's access (`key` is the user id),
    at `at` (seconds since the epoch: when the event occurred, or identity's command committed)."""

    kind: Literal["session", "account"]
    key: str
    at: float
    reason: str

    def as_record(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "at": self.at, "reason": self.reason}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Ending:
        kind = "account" if record.get("kind") == "account" else "session"
        return cls(kind, str(record["key"]), float(record["at"]), str(record["reason"]))


def ending_of(envelope: EventEnvelope) -> Ending | None:
    """The end an identity event stands for, if any."""
    kind, payload = envelope.event_type, envelope.payload
    at = envelope.occurred_at.timestamp()
    if kind in SESSION_ENDING and payload.get("session_id"):
        return Ending("session", payload["session_id"], at, SESSION_ENDING[kind])
    if kind in ACCESS_ENDING and payload.get("user_id"):
        reason = ACCESS_ENDING[kind]
        if kind == "PasswordChanged" and payload.get("changed_by") == payload["user_id"]:
            reason = CHANGED_BY_ITS_USER
        return Ending("account", payload["user_id"], at, reason)
    return None


class SessionRevocations:
    """Ended sessions (`sid` -> when, why) and ended accounts (`sub` -> when, why).

    A token of an ended session is refused whenever it was issued; a token of an ended account
    only if issued at or before the end (`iat` has milliseconds; identity dates an end once
    its command committed, so a token signed while the command ran is refused too).
    """

    def __init__(
        self,
        keep_s: float = 3600,
        clock: Callable[[], float] = time.time,
        prune_every_s: float = 30.0,
    ) -> None:
        self.keep_s = keep_s
        self.clock = clock
        self.prune_every_s = prune_every_s
        self._sessions: dict[str, tuple[float, str]] = {}
        self._accounts: dict[str, tuple[float, str]] = {}
        self._pruned_at = clock()

    def __len__(self) -> int:
        return len(self._sessions) + len(self._accounts)

    def apply(self, envelope: EventEnvelope) -> bool:
        """Fold one identity event; True when it ended a session or an account's access."""
        ending = ending_of(envelope)
        return ending is not None and self.fold(ending)

    def fold(self, ending: Ending) -> bool:
        """Remember one end (from an event or from identity's list of ends)."""
        if ending.kind == "session":
            return self.end_session(ending.key, ending.at, ending.reason)
        return self.end_access(ending.key, ending.at, ending.reason)

    def end_session(self, session_id: str, at: float, reason: str) -> bool:
        if at < self.clock() - self.keep_s:
            return False
        self._sessions[session_id] = (at, reason)
        return True

    def end_access(self, user_id: str, at: float, reason: str) -> bool:
        if at < self.clock() - self.keep_s:
            return False
        known = self._accounts.get(user_id)
        if known is None or known[0] < at:
            self._accounts[user_id] = (at, reason)
        return True

    def refusal(self, claims: AccessClaims) -> str | None:
        """Why the token's session or account has ended, or None while it is good."""
        if self.clock() - self._pruned_at > self.prune_every_s:
            self.prune()
        if claims.sid is not None:
            ended = self._sessions.get(claims.sid)
            if ended is not None:
                return ended[1]
        if claims.kind == "user":
            ended = self._accounts.get(claims.sub)
            if ended is not None and claims.iat <= ended[0]:
                return ended[1]
        return None

    def prune(self) -> int:
        """Forget ends older than `keep_s`; how many were forgotten."""
        now = self.clock()
        self._pruned_at = now
        oldest = now - self.keep_s
        forgotten = 0
        for ended in (self._sessions, self._accounts):
            for key in [k for k, (at, _) in ended.items() if at < oldest]:
                del ended[key]
                forgotten += 1
        return forgotten
