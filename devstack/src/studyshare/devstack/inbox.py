"""In-memory store of caught mails and SMS, newest first."""

from __future__ import annotations

import email
import email.policy
import html as html_entities
import re
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

URL = re.compile(r"https?://[^\s\"'<>]+")


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Mail:
    id: str
    envelope_from: str
    envelope_to: list[str]
    from_: str
    to: list[str]
    cc: list[str]
    subject: str
    message_id: str | None
    text: str | None
    html: str | None
    headers: dict[str, list[str]]
    links: list[str]
    size: int
    received_at: str
    raw: bytes = field(repr=False)

    def recipients(self) -> set[str]:
        return {a.lower() for a in [*self.envelope_to, *self.to, *self.cc]}

    def summary(self) -> dict[str, Any]:
        data = self.as_dict()
        for key in ("text", "html", "headers"):
            data.pop(key)
        return data

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("raw")
        data["from"] = data.pop("from_")
        return data


@dataclass(frozen=True)
class Sms:
    id: str
    to: str
    text: str
    sender: str | None
    received_at: str = field(default_factory=_now)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_mail(raw: bytes, envelope_from: str, envelope_to: list[str]) -> Mail:
    """Everything a test or a developer wants to read from one message."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = html = None
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        if part is not None and part.get_content_type() == f"text/{kind}":
            content = part.get_content()
            if kind == "plain":
                text = content
            else:
                html = content
    headers: dict[str, list[str]] = {}
    for name, value in message.items():
        headers.setdefault(name, []).append(str(value))
    # an HTML part escapes `&` in its links (`?a=1&amp;b=2`): read them as a browser does
    unescaped = html_entities.unescape(html or "")
    links = list(dict.fromkeys(URL.findall((text or "") + "\n" + unescaped)))
    return Mail(
        id=uuid.uuid4().hex[:16],
        envelope_from=envelope_from,
        envelope_to=list(envelope_to),
        from_=str(message.get("From", "")),
        to=[addr for _, addr in getaddresses(message.get_all("To", [])) if addr],
        cc=[addr for _, addr in getaddresses(message.get_all("Cc", [])) if addr],
        subject=str(message.get("Subject", "")),
        message_id=str(message["Message-ID"]) if message["Message-ID"] else None,
        text=text,
        html=html,
        headers=headers,
        links=links,
        size=len(raw),
        received_at=_now(),
        raw=raw,
    )


class Inbox:
    """Keeps the last `keep` mails and SMS in memory."""

    def __init__(self, keep: int = 5000) -> None:
        self.mails: deque[Mail] = deque(maxlen=keep)
        self.sms: deque[Sms] = deque(maxlen=keep)

    def add_mail(self, mail: Mail) -> None:
        self.mails.appendleft(mail)

    def add_sms(self, to: str, text: str, sender: str | None) -> Sms:
        sms = Sms(id=uuid.uuid4().hex[:16], to=to, text=text, sender=sender)
        self.sms.appendleft(sms)
        return sms

    def find_mails(self, to: str | None = None) -> list[Mail]:
        if not to:
            return list(self.mails)
        needle = to.strip().lower()
        return [m for m in self.mails if needle in m.recipients()]

    def mail(self, mail_id: str) -> Mail | None:
        return next((m for m in self.mails if m.id == mail_id), None)

    def find_sms(self, to: str | None = None) -> list[Sms]:
        if not to:
            return list(self.sms)
        needle = _digits(to)
        return [s for s in self.sms if _digits(s.to) == needle]


def _digits(number: str) -> str:
    """`+32 470 12 34 56` and `+32470123456` are the same mobile number (and a `+` arrives
    as a space in an unencoded query string)."""
    return re.sub(r"\D", "", number)
