"""Whether a command's narrowing of access reached every follower before it answered.

A command that revokes, locks or ends a session waits (`followers.FollowerRegistry.wait_for`)
until no follower can still answer on the state before it. When that wait runs out, the
command still succeeds (its event is stored) but says so: `note(False)`, and the answer
carries `StudyShare-Propagated: false` (`true` when every wait was confirmed). Answers of
commands that waited for nothing carry no such header. The app factory's correlation
middleware opens a holder per request (`begin`) and writes the header from it.
"""

from __future__ import annotations

from contextvars import ContextVar

HEADER = "studyshare-propagated"

_holder: ContextVar[dict[str, bool] | None] = ContextVar("propagation", default=None)


def begin() -> dict[str, bool]:
    """A fresh holder for the request being answered (shared by copies of the context)."""
    holder: dict[str, bool] = {}
    _holder.set(holder)
    return holder


def note(confirmed: bool) -> None:
    """Record one wait's outcome for the request in progress (all must be confirmed)."""
    holder = _holder.get()
    if holder is not None:
        holder["confirmed"] = holder.get("confirmed", True) and confirmed


def header(holder: dict[str, bool]) -> tuple[bytes, bytes] | None:
    if "confirmed" not in holder:
        return None
    return HEADER.encode(), b"true" if holder["confirmed"] else b"false"
