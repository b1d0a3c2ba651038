"""Notifications: what is sent to whom through which channel, and the delivery state machine.

A message is identified by its cause event, its recipient and its channel: the id
`ntf_<hash>` of the three is the key of the delivery record and of the `Notification`
aggregate, so a cause delivered twice (redelivery, restart, replay) yields one message.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

Channel = Literal["mail", "sms"]
Kind = Literal["mail", "sms", "fanout"]
Language = Literal["en", "nl", "fr", "de"]
LANGUAGES: tuple[str, ...] = ("en", "nl", "fr", "de")
DEFAULT_LANGUAGE = "en"

State = Literal["pending", "sending", "retry", "sent", "parked", "expanded", "skipped"]
#: states a message can still leave on its own
OPEN_STATES: tuple[str, ...] = ("pending", "sending", "retry")
TERMINAL_STATES: tuple[str, ...] = ("sent", "parked", "expanded", "skipped")

TargetKind = Literal["user", "email", "department", "mobile", "group", "alert", "service_desk"]


def language_or_default(language: str | None) -> str:
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Target:
    """Who a message is for, before addresses are looked up.

    `group`, `alert` (admins of a department and the service desk) and `service_desk` are
    expanded into persons when the message is due, so they see the composition of that moment.
    """

    kind: TargetKind
    id: str | None = None
    email: str | None = None
    mobile: str | None = None

    @property
    def key(self) -> str:
        """The recipient part of the message's identity. A user is the same recipient whether
        named directly or through a group, so one share mails them once."""
        if self.kind in ("user", "department"):
            return str(self.id)
        if self.kind == "email":
            return f"email:{(self.email or '').strip().lower()}"
        if self.kind == "mobile":
            return f"mobile:{self.mobile}"
        return f"{self.kind}:{self.id or '*'}"

    @property
    def expands(self) -> bool:
        return self.kind in ("group", "alert", "service_desk")

    @property
    def recipient_id(self) -> str | None:
        return self.id if self.kind in ("user", "department", "group") else None

    def to_doc(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Target:
        return cls(**{k: doc.get(k) for k in ("kind", "id", "email", "mobile")})


def notification_id(cause_event_id: str, recipient_key: str, channel: str) -> str:
    """`ntf_<hash of (cause event id, recipient, channel)>`: the same inputs, the same id."""
    digest = hashlib.sha256(f"{cause_event_id}|{recipient_key}|{channel}".encode()).hexdigest()
    return f"ntf_{digest[:24]}"


@dataclass(frozen=True)
class Intent:
    """A message (or a set of messages, for a target that expands) an event asks for."""

    cause_event_id: str
    cause_event_type: str
    channel: Channel
    target: Target
    template: str
    language: str | None
    context: dict[str, Any] = field(default_factory=dict)
    sealed_code: str | None = None
    expires_at: datetime | None = None

    @property
    def kind(self) -> Kind:
        return "fanout" if self.target.expands else self.channel

    @property
    def id(self) -> str:
        return notification_id(self.cause_event_id, self.target.key, self.kind)

    def child(self, target: Target) -> Intent:
        """The message of one person an expanding target stands for."""
        return Intent(
            self.cause_event_id,
            self.cause_event_type,
            self.channel,
            target,
            self.template,
            self.language,
            self.context,
            self.sealed_code,
            self.expires_at,
        )


# --- outcomes of one attempt, and what the record becomes --------------------------------


@dataclass(frozen=True)
class Sent:
    message_id: str | None = None


@dataclass(frozen=True)
class Transient:
    """Worth trying again (server down, 4xx SMTP reply, HTTP 5xx/429, data not there yet)."""

    reason: str
    not_before: datetime | None = None


@dataclass(frozen=True)
class Permanent:
    """Trying again cannot help (address refused, no address, code expired)."""

    reason: str


@dataclass(frozen=True)
class Skipped:
    """Nothing to send any more (recipient deactivated); not a failure."""

    reason: str


@dataclass(frozen=True)
class Expanded:
    children: tuple[Intent, ...]


Outcome = Sent | Transient | Permanent | Skipped | Expanded


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: base, 2*base, 4*base ... capped; parked after `max_attempts`."""

    max_attempts: int = 6
    base_s: float = 5.0
    max_s: float = 900.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.base_s * 2 ** max(attempts - 1, 0), self.max_s))


@dataclass(frozen=True)
class Transition:
    state: State
    due_at: datetime | None = None
    reason: str | None = None


def after_attempt(
    outcome: Outcome,
    attempts: int,
    policy: RetryPolicy,
    now: datetime,
    deadline: datetime | None = None,
) -> Transition:
    """The record's next state after attempt number `attempts` ended with `outcome`.

    A transient failure is retried after the backoff delay unless it was the last attempt or
    the retry would come after the message's `deadline` (a one-time code's expiry): then the
    message is parked with its reason, for operators.
    """
    if isinstance(outcome, Sent):
        return Transition("sent")
    if isinstance(outcome, Expanded):
        return Transition("expanded")
    if isinstance(outcome, Skipped):
        return Transition("skipped", reason=outcome.reason)
    if isinstance(outcome, Permanent):
        return Transition("parked", reason=outcome.reason)
    due = now + policy.delay(attempts)
    if outcome.not_before is not None:
        due = max(due, outcome.not_before)
    if attempts >= policy.max_attempts:
        return Transition("parked", reason=f"{outcome.reason} (after {attempts} attempts)")
    if deadline is not None and due >= deadline:
        return Transition("parked", reason=f"{outcome.reason} (expired before a retry)")
    return Transition("retry", due_at=due, reason=outcome.reason)


def format_date(value: date | datetime | None, language: str) -> str | None:
    """Dates as the manuals show them (dd/mm/yyyy; dd.mm.yyyy in German)."""
    if value is None:
        return None
    return value.strftime("%d.%m.%Y" if language == "de" else "%d/%m/%Y")
