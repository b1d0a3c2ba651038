"""Portal sessions: an opaque random id in the cookie, everything else on the server.

The store is in memory (one portal process per environment, see the README): a restart logs
everybody out, which costs a login and nothing else, since the tokens inside end by themselves.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

COOKIE = "studyshare_session"


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
    """Sessions by id, dropped after `idle_s` without use or when more than `max_sessions`."""

    def __init__(self, idle_s: int, max_sessions: int) -> None:
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def new(self) -> Session:
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32))
        self._sessions[session.id] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.touched > self.idle_s:
            del self._sessions[session_id]
            return None
        session.touched = now
        self._sessions.move_to_end(session_id)
        return session

    def rotate(self, session: Session) -> Session:
        """A new id (and CSRF token) for the same session: done at every login."""
        self._sessions.pop(session.id, None)
        session.id = secrets.token_urlsafe(32)
        session.csrf = secrets.token_urlsafe(32)
        self._sessions[session.id] = session
        return session

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
