"""Domain refusals: one class per rule, each of a kind (not found, forbidden, conflict, ...).

A refusal carries what the domain knows: its rule (the class name), a human title and the
detail. How it is answered (the HTTP status of each kind) is the edge's business:
`studyshare.plumbing.http.status_of`."""

from __future__ import annotations

import re


class RuleViolation(Exception):
    """A command broke a domain rule. The rule's stable name is the exception's class name.

    Subclass it per rule (e.g. `class ImagesOnlyNotAllowedForUser(RuleViolation)`), from the
    kind of refusal it is (`NotFound`, `Forbidden`, ...); `title` is its human heading.
    """

    title: str = "Rule violated"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "status" in vars(cls):  # it would be silently ignored: say where it belongs
            raise TypeError(
                f"{cls.__name__}: a refusal carries no HTTP status; map it at the edge "
                "(`studyshare.plumbing.http.status_of`, a service's `entrypoints/errors.py`)"
            )

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def rule(self) -> str:
        return type(self).__name__


class NotFound(RuleViolation):
    """No such thing (or not one the caller may know of)."""

    title = "Not found"


class Forbidden(RuleViolation):
    """The caller may not do this."""

    title = "Forbidden"


class Unauthorized(RuleViolation):
    """Who the caller is was not proven."""

    title = "Unauthorized"


class Conflict(RuleViolation):
    """The thing is not in a state that allows this (any more)."""

    title = "Conflict"


class Locked(RuleViolation):
    """The thing is locked until someone unlocks it."""

    title = "Locked"


class TooManyAttempts(RuleViolation):
    """Too many tries lately: wait before trying again (`retry_after_s`, when known, is the
    answer's `Retry-After`: `studyshare.plumbing.http.refused`)."""

    title = "Too many attempts"

    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class TooLarge(RuleViolation):
    """What was sent is larger than is taken."""


class UnsupportedMedia(RuleViolation):
    """What was sent is not of a kind that is taken (not DICOM, not a PDF, ...)."""


class Unavailable(RuleViolation):
    """The decision cannot be made now (what it rests on is not known to be current): refused
    rather than decided wrongly; asking again later may succeed."""


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
