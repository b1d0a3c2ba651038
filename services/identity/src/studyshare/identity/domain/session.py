"""A login session's own stream (`ses_...`): login, refreshes, logout, refresh-token reuse.

The events are the User events of the catalogue (`LoginSucceeded`, `LoggedOut`,
`RefreshTokenReuseDetected`, all carrying `user_id`), kept off the User aggregate's stream so
that a user's stream does not grow with every login and token refresh. A patient's session
(logged in on the Patient stream) ends here too: its `LoggedOut` carries the `pat_` id.
"""

from __future__ import annotations

from studyshare.contracts.events.identity import (
    LoggedOut,
    LoginSucceeded,
    RefreshTokenReuseDetected,
)
from studyshare.plumbing.domain import Aggregate, applies


class LoginSession(Aggregate):
    aggregate_type = "User"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.ended = False

    @applies
    def when_logged_out(self, e: LoggedOut) -> None:
        self.ended = True

    @applies
    def when_refresh_token_reuse_detected(self, e: RefreshTokenReuseDetected) -> None:
        self.ended = True

    def logged_in(self, user_id: str, method: str, ip: str | None) -> list[LoginSucceeded]:
        return [
            LoginSucceeded(user_id=user_id, method=method, session_id=self.id, source_ip=ip)  # type: ignore[arg-type]
        ]

    def logged_out(self, user_id: str) -> list[LoggedOut]:
        return [] if self.ended else [LoggedOut(user_id=user_id, session_id=self.id)]

    def refresh_reused(self, user_id: str, ip: str | None) -> list[RefreshTokenReuseDetected]:
        return [RefreshTokenReuseDetected(user_id=user_id, session_id=self.id, source_ip=ip)]
