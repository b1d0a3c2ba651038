"""Moments as the portal's users read and type them: in the portal's time zone
(`portal_time_zone`; Europe/Brussels by default, which every country StudyShare serves shares),
while the API speaks UTC. Pages show local times and say which zone; a time or day typed in a
form is the local one, sent to the API as a UTC moment."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import pass_context


def moment_of(value: str | datetime | None) -> datetime | None:
    """An API moment (ISO 8601, UTC when it names no offset), or None."""
    if value is None or value == "":
        return None
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def local_time(value: str | datetime | None, zone: ZoneInfo, seconds: bool = False) -> str:
    """`YYYY-MM-DD HH:MM[:SS]` in `zone`; a value that is no moment as it is."""
    moment = moment_of(value)
    if moment is None:
        return str(value or "")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def local_day(value: str | datetime | None, zone: ZoneInfo) -> str:
    """The day of a moment in `zone` (a plain date stays as it is)."""
    text = str(value or "")
    if len(text) == 10:  # a date, no moment: no zone to move it by
        return text
    moment = moment_of(value)
    return moment.astimezone(zone).date().isoformat() if moment else text


def utc_moment(value: str, zone: ZoneInfo) -> str:
    """A `datetime-local` or date field, typed in `zone`, as an ISO 8601 UTC moment; a value
    that is no date is passed on as typed, for the API to name the problem."""
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC).isoformat()


def day_bound(value: str, at: time, zone: ZoneInfo) -> str | None:
    """A date field as the moment `at` of that day in `zone`, in UTC; None when empty."""
    value = value.strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value  # sent as typed: the API's refusal names what is wrong
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC).isoformat()


@pass_context
def local_time_filter(context: Any, value: Any, seconds: bool = False) -> str:
    return local_time(value, context["zone"], seconds)


@pass_context
def local_day_filter(context: Any, value: Any) -> str:
    return local_day(value, context["zone"])
