"""Portal sessions: an opaque random id in the cookie, everything else on the server.

The store is in memory (one portal process per environment, see the README): a restart logs
everybody out, which costs a login and nothing else, since the tokens inside end by themselves.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

COOKIE = "studyshare_session"


def cookie_name(secure: bool) -> str:
    """The session cookie's name: over HTTPS `__Host-` binds it to this host alone (the
    browser keeps it only Secure, with Path=/ and no Domain), so that a sibling host of the
    same site cannot plant one (a CSRF token it knows, a login into its account)."""
    return f"__Host-{COOKIE}" if secure else COOKIE


@dataclass
class Session:
    """One browser's session: its CSRF token, language and, once logged in, its tokens."""

    id: str
    csrf: str
    language: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    access_expires_at: float = 0.0
    #: what the login answered (`study_uid` for a patient) and `GET /api/users/me`
    user: dict[str, Any] = field(default_factory=dict)
    patient: bool = False
    #: the login form's half-done state (the TOTP or SMS code step)
    pending: dict[str, Any] = field(default_factory=dict)
    touched: float = field(default_factory=time.monotonic)
    #: held while the tokens are refreshed (`adapters.public_api`): one refresh at a time
    refreshing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    @property
    def logged_in(self) -> bool:
        return self.access_token is not None

    def sign_in(self, tokens: dict[str, Any], *, patient: bool = False) -> None:
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens.get("refresh_token")
        self.access_expires_at = time.time() + float(tokens.get("expires_in", 300))
        self.patient = patient
        self.pending = {}

    def sign_out(self) -> None:
        self.access_token = self.refresh_token = None
        self.access_expires_at = 0.0
        self.user = {}
        self.patient = False
        self.pending = {}


class SessionStore:
    """Sessions by id, dropped after `idle_s` without use, or the least recently used when a
    tier holds more than `max_sessions`. The logged-in sessions and the anonymous ones are
    two tiers, counted apart: any number of anonymous visits (every cookie-less request makes
    one) pushes out anonymous sessions only, never a logged-in user's."""

    def __init__(self, idle_s: int, max_sessions: int) -> None:
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self._anonymous: OrderedDict[str, Session] = OrderedDict()
        self._signed_in: OrderedDict[str, Session] = OrderedDict()

    def new(self) -> Session:
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32))
        self._file(self._anonymous, session)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        tier = self._signed_in if session_id in self._signed_in else self._anonymous
        session = tier.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.touched > self.idle_s:
            del tier[session_id]
            return None
        session.touched = now
        tier.move_to_end(session_id)
        return session

    def rotate(self, session: Session) -> Session:
        """A new id (and CSRF token) for the same session, now among the logged-in ones: done
        at every login."""
        self.drop(session)
        session.id = secrets.token_urlsafe(32)
        session.csrf = secrets.token_urlsafe(32)
        self._file(self._signed_in, session)
        return session

    def drop(self, session: Session) -> None:
        self._anonymous.pop(session.id, None)
        self._signed_in.pop(session.id, None)

    def _file(self, tier: OrderedDict[str, Session], session: Session) -> None:
        tier[session.id] = session
        while len(tier) > self.max_sessions:
            tier.popitem(last=False)
