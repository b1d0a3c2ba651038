"""Domain refusals and their problem+json (RFC 9457) form."""

from __future__ import annotations

import re


class RuleViolation(Exception):
    """A command broke a domain rule. The rule's stable name is the exception's class name.

    Subclass it per rule (e.g. `class ImagesOnlyNotAllowedForUser(RuleViolation)`); `status`
    is the HTTP status the refusal answers with.
    """

    status: int = 422
    title: str = "Rule violated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def rule(self) -> str:
        return type(self).__name__


class NotFound(RuleViolation):
    status = 404
    title = "Not found"


class Forbidden(RuleViolation):
    status = 403
    title = "Forbidden"


class Unauthorized(RuleViolation):
    status = 401
    title = "Unauthorized"


class Conflict(RuleViolation):
    status = 409
    title = "Conflict"


class Locked(RuleViolation):
    status = 423
    title = "Locked"


class TooManyAttempts(RuleViolation):
    status = 429
    title = "Too many attempts"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
