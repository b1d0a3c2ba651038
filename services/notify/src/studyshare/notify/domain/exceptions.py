"""Refusals of the notify domain, named after the rule they enforce."""

from __future__ import annotations

from studyshare.plumbing.errors import Conflict, NotFound


class NotificationNotFound(NotFound):
    """No message with this id."""


class NotificationNotParked(Conflict):
    """Only a parked message can be sent back to the queue."""
