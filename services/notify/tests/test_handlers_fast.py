"""Notify's delivery jobs over the in-memory event store (`plumbing.fakes`) and an in-memory
delivery log, directory and mail server: no database, no broker, no SMTP (issue 18, point 2).
The delivery tests drive the same jobs over MongoDB and a real SMTP catcher."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.notify.adapters.deliveries import new_record
from studyshare.notify.domain import reactions as r
from studyshare.notify.domain.exceptions import NotificationNotFound, NotificationNotParked
from studyshare.notify.domain.model import Intent, Permanent, Sent, Target, Transition
from studyshare.notify.domain.views import GroupView, UserView
from studyshare.notify.service_layer import operations
from studyshare.notify.service_layer.sender import Sender
from studyshare.notify.settings import NotifySettings
from studyshare.plumbing.fakes import InMemoryEventStore

Doc = dict[str, Any]
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class InMemoryDeliveries:
    """The delivery log (`adapters.deliveries.DeliveryStore`) in a dict."""

    def __init__(self) -> None:
        self.records: dict[str, Doc] = {}

    async def ensure_indexes(self) -> None:
        return None

    async def add(self, docs: list[Doc], session: Any = None) -> None:
        for doc in docs:
            self.records.setdefault(doc["_id"], dict(doc))

    def claim(self, notification_id: str) -> Doc:
        record = self.records[notification_id]
        record.update(state="sending", claim="c", attempts=record["attempts"] + 1)
        return dict(record)

    async def hand_over(self, doc: Doc, message_id: str | None, extra: Doc, now: datetime):
        self.records[doc["_id"]]["handed_over"] = {"message_id": message_id, "extra": extra}

    async def finish(
        self, doc: Doc, transition: Transition, now: datetime, extra=None, session=None
    ) -> bool:
        record = self.records[doc["_id"]]
        if record.get("claim") != doc["claim"] or record["state"] != "sending":
            return False
        record.update(state=transition.state, reason=transition.reason, **(extra or {}))
        record.pop("claim")
        return True

    async def requeue(self, notification_id: str, now: datetime, session: Any = None) -> bool:
        record = self.records.get(notification_id)
        if record is None or record["state"] != "parked":
            return False
        record.update(state="pending", attempts=0, due_at=now, reason=None)
        return True

    async def get(self, notification_id: str) -> Doc | None:
        return self.records.get(notification_id)


class InMemoryDirectory:
    def __init__(self, users: list[UserView], groups: list[GroupView]) -> None:
        self.users_by_id = {u.id: u for u in users}
        self.groups_by_id = {g.id: g for g in groups}

    async def user(self, user_id: str | None) -> UserView | None:
        return self.users_by_id.get(user_id or "")

    async def users(self, ids) -> dict[str, UserView]:
        return {i: self.users_by_id[i] for i in ids if i in self.users_by_id}

    async def group(self, group_id: str | None) -> GroupView | None:
        return self.groups_by_id.get(group_id or "")


class Mailer:
    """A mail server that takes every message (or refuses them all)."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.refuse: str | None = None

    async def send(self, message: EmailMessage) -> Sent | Permanent:
        if self.refuse:
            return Permanent(self.refuse)
        self.sent.append(message)
        return Sent(message_id=message["Message-ID"])


class Notify:
    def __init__(self) -> None:
        self.events = InMemoryEventStore()
        self.log = InMemoryDeliveries()
        self.mailer = Mailer()
        self.directory = InMemoryDirectory(
            [
                UserView("usr_desk", "Service", "Desk", email="desk@example.org"),
                UserView("usr_new", "New", "Doctor", email="new@example.org"),
                UserView("usr_m1", "Member", "One", email="m1@example.org"),
                UserView("usr_m2", "Member", "Two", email=None),
            ],
            [GroupView("grp_1", "Practice", member_ids=("usr_m1", "usr_m2"))],
        )
        self.sender = Sender(
            None,
            NotifySettings(),
            mailer=self.mailer,  # type: ignore[arg-type]
            clock=lambda: NOW,
            store=self.log,  # type: ignore[arg-type]
            directory=self.directory,  # type: ignore[arg-type]
            events=self.events,
        )

    async def queue(self, target: Target) -> str:
        intent = Intent(
            cause_event_id="evt_1",
            cause_event_type="UserRegistered",
            channel="mail",
            target=target,
            template=r.REGISTRATION_PENDING,
            language="en",
            context={"user_id": "usr_new", "username": "new"},
        )
        await self.log.add([new_record(intent, now=NOW)])
        return intent.id

    def of(self, event_type: str) -> list[Doc]:
        return [e.payload for e in self.events.events_of(event_type)]


@pytest.fixture
def notify() -> Notify:
    return Notify()


async def test_a_mail_sent_is_recorded_once(notify: Notify) -> None:
    ntf = await notify.queue(Target("user", id="usr_desk"))
    assert await notify.sender.process(notify.log.claim(ntf)) == "sent"
    [mail] = notify.mailer.sent
    assert mail["To"].addresses[0].addr_spec == "desk@example.org"
    [sent] = notify.of("NotificationSent")
    assert (sent["notification_id"], sent["attempts"]) == (ntf, 1)
    again = notify.log.claim(ntf)  # redelivered after a crash before the record
    assert await notify.sender.record(again, Sent(), {}) == "sent"
    assert len(notify.of("NotificationSent")) == 1, "the event exists once per message"


async def test_a_refused_mail_is_parked_then_requeued_by_the_desk(notify: Notify) -> None:
    ntf = await notify.queue(Target("user", id="usr_desk"))
    notify.mailer.refuse = "550 no such mailbox"
    assert await notify.sender.process(notify.log.claim(ntf)) == "parked"
    [failed] = notify.of("NotificationFailed")
    assert failed["reason"] == "550 no such mailbox"
    desk = Actor(kind="user", id="usr_desk", role="service_desk")
    doc = await operations.requeue(notify.log, notify.events, ntf, desk)  # type: ignore[arg-type]
    assert (doc["state"], doc["attempts"]) == ("pending", 0)
    [requeued] = notify.of("NotificationRequeued")
    assert (requeued["requeued_by"], requeued["previous_reason"]) == ("usr_desk", failed["reason"])
    with pytest.raises(NotificationNotParked):
        await operations.requeue(notify.log, notify.events, ntf, desk)  # type: ignore[arg-type]
    with pytest.raises(NotificationNotFound):
        await operations.requeue(notify.log, notify.events, "ntf_none", desk)  # type: ignore[arg-type]


async def test_a_group_message_becomes_one_per_member_with_an_address(notify: Notify) -> None:
    ntf = await notify.queue(Target("group", id="grp_1"))
    assert await notify.sender.process(notify.log.claim(ntf)) == "expanded"
    children = [d for d in notify.log.records.values() if d.get("parent_id") == ntf]
    assert [c["recipient_id"] for c in children] == ["usr_m1"]
    assert notify.events.committed == [], "an expansion is no delivery: no event"
    assert await notify.sender.process(notify.log.claim(children[0]["_id"])) == "sent"
    assert [s["recipient_id"] for s in notify.of("NotificationSent")] == ["usr_m1"]


@pytest.mark.parametrize(
    ("first_name", "email"),
    [
        ("Eve\r\nBcc: victim@evil.example", "eve@example.org"),
        ("Eve\nX-Injected: yes", "eve@example.org"),
        ("Eve", "eve@example.org\r\nBcc: victim@evil.example"),
        ("Eve", "eve@\u00ebxample.org"),
    ],
)
async def test_a_mail_that_cannot_be_built_fails_for_good_at_the_first_attempt(
    notify: Notify, capfd: pytest.CaptureFixture[str], first_name: str, email: str
) -> None:
    """A name or address that breaks the mail's headers breaks them on every attempt."""
    notify.directory.users_by_id["usr_eve"] = UserView("usr_eve", first_name, "P", email=email)
    ntf = await notify.queue(Target("user", id="usr_eve"))
    assert await notify.sender.process(notify.log.claim(ntf)) == "parked"
    assert notify.mailer.sent == []
    [failed] = notify.of("NotificationFailed")
    assert failed["attempts"] == 1
    assert failed["reason"].startswith("the mail cannot be built"), failed["reason"]
    out, err = capfd.readouterr()
    assert "notification.mail_unbuildable" in out
    for personal in ("Eve", "eve@", "victim", "xample.org", "Injected"):
        assert personal not in out + err + failed["reason"], personal
