"""The sender loop: claims due messages from the delivery log and delivers them.

One attempt = claim (state `sending`, attempts + 1, a lease) -> resolve the address and render
the text from what notify knows at that moment -> hand it to SMTP or the SMS provider -> record
the outcome. Recording `sent` and appending `NotificationSent` happen in one transaction, so the
event exists exactly once per message.

The server's acceptance is noted at once (`handed_over`, one small write) before the slower
recording transaction; a sender that dies after that note is followed by one that only
records the message as sent.

The ambiguous window, and our choice: if the process dies after the mail server (or SMS
provider) accepted a message but before that note is stored, nothing on our side can tell
whether it went out. The lease then runs out and the message is sent again: **at-least-once**.
A lost share mail or one-time code is worse than a second copy, and the second copy of a mail
carries the same `Message-ID` (derived from the notification id), so a receiving mail system
can drop it; a second SMS carries the same code. Outside that window (a crash before the
server's acceptance, a restart, a redelivered event) the message is delivered exactly once.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

from prometheus_client import Counter

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.notify import NotificationFailed, NotificationSent
from studyshare.notify.adapters.deliveries import intent_of, new_record
from studyshare.notify.domain.model import (
    Expanded,
    Outcome,
    Sent,
    Transient,
    after_attempt,
    language_or_default,
)
from studyshare.notify.service_layer.delivery import utcnow
from studyshare.notify.service_layer.fanout import FanOut
from studyshare.notify.service_layer.mail_delivery import MailDelivery
from studyshare.notify.service_layer.sms_delivery import SmsDelivery
from studyshare.plumbing.logging import bind_correlation_id, clear_context, get_logger
from studyshare.plumbing.unit_of_work import Session

__all__ = ["LeaseLost", "Sender", "utcnow"]

log = get_logger(__name__)

OUTCOMES = Counter(
    "studyshare_notifications_total",
    "Delivery attempts by channel, template and resulting state",
    ["channel", "template", "state"],
)
ACTOR = Actor.system("notify")


class LeaseLost(Exception):
    """Our claim ran out and someone else took the message: record nothing."""


class Sender(FanOut, MailDelivery, SmsDelivery):
    """The sender loop: claims due messages, makes one attempt at each (`fanout`,
    `mail_delivery`, `sms_delivery`) and records its outcome."""

    async def run(self) -> None:
        """Deliver due messages forever, `delivery_concurrency` at a time."""
        await self.start()
        slots = asyncio.Semaphore(self.settings.delivery_concurrency)
        running: set[asyncio.Task] = set()
        log.info("sender.started", concurrency=self.settings.delivery_concurrency)
        failures = 0
        try:
            while True:
                await slots.acquire()
                try:
                    doc = await self.store.claim(self.clock(), self.lease)
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("sender.claim_failed", consecutive=failures)
                    doc = None
                if doc is None:
                    slots.release()
                    idle = self.settings.sender_poll_s * 2 ** min(failures, 5)
                    await asyncio.sleep(min(idle, 5.0) if failures else idle)
                    continue
                task = asyncio.create_task(self._process_and_release(doc, slots))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            # stopping: an attempt cut short leaves its lease to run out (sent again later)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def run_forever(self, restart_delay_s: float = 1.0) -> None:
        """`run`, started again after anything but cancellation (the database away at start)."""
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sender.crashed")
                await asyncio.sleep(restart_delay_s)

    async def _process_and_release(self, doc: dict[str, Any], slots: asyncio.Semaphore) -> None:
        try:
            await self.process(doc)
        finally:
            slots.release()

    async def run_until_idle(self) -> int:
        """Deliver everything due now, one by one; how many attempts were made (tests, tools)."""
        await self.start()
        count = 0
        while (doc := await self.store.claim(self.clock(), self.lease)) is not None:
            await self.process(doc)
            count += 1
        return count

    async def process(self, doc: dict[str, Any]) -> str:
        """Make one attempt at a claimed message and record its outcome; the new state."""
        clear_context()
        bind_correlation_id(doc.get("correlation_id") or doc["cause_event_id"])
        try:
            # an attempt never outlives its lease, or a second sender could take it meanwhile
            async with asyncio.timeout(self.lease.total_seconds() * 0.8):
                outcome, extra = await self.attempt(doc)
        except TimeoutError:
            outcome, extra = Transient("the attempt took longer than its lease allows"), {}
        except Exception as exc:
            # the traceback without local variables: a frame may hold a one-time code
            log.error(
                "notification.attempt_crashed",
                notification_id=doc["_id"],
                traceback="".join(traceback.format_exception(exc)),
            )
            outcome, extra = Transient(f"internal error: {type(exc).__name__}"), {}
        if isinstance(outcome, Sent) and not doc.get("handed_over"):
            try:
                await self.store.hand_over(doc, outcome.message_id, extra, self.clock())
            except Exception:
                log.exception("notification.hand_over_failed", notification_id=doc["_id"])
        try:
            return await self.record(doc, outcome, extra)
        except LeaseLost:
            log.warning("notification.lease_lost", notification_id=doc["_id"])
            return "lost"
        except Exception:
            # the lease runs out and the message is attempted again (see the module docstring)
            log.exception("notification.record_failed", notification_id=doc["_id"])
            return "unrecorded"

    async def attempt(self, doc: dict[str, Any]) -> tuple[Outcome, dict[str, Any]]:
        handed = doc.get("handed_over")
        if handed:  # an earlier attempt's message was accepted; only its record is missing
            return Sent(message_id=handed.get("message_id")), dict(handed.get("extra") or {})
        intent = intent_of(doc)
        if doc["kind"] == "fanout":
            return await self.expand(doc, intent), {}
        if intent.channel == "sms":
            return await self.send_sms(doc, intent)
        return await self.send_mail(doc, intent)

    async def record(self, doc: dict[str, Any], outcome: Outcome, extra: dict[str, Any]) -> str:
        now = self.clock()
        transition = after_attempt(
            outcome, doc["attempts"], self.policy, now, deadline=doc.get("expires_at")
        )
        if isinstance(outcome, Sent) and outcome.message_id:
            extra = {**extra, "message_id": outcome.message_id}

        async def work(session: Session) -> dict[str, Any]:
            finished = extra
            if isinstance(outcome, Expanded):
                children = [
                    new_record(
                        child,
                        now=now,
                        cause_occurred_at=doc.get("cause_occurred_at"),
                        correlation_id=doc.get("correlation_id"),
                        parent_id=doc["_id"],
                    )
                    for child in outcome.children
                ]
                await self.store.add(children, session=session)
                finished = {**extra, "children": [c["_id"] for c in children]}
            if not await self.store.finish(doc, transition, now, finished, session=session):
                raise LeaseLost(doc["_id"])
            if transition.state == "sent":
                event = NotificationSent(
                    notification_id=doc["_id"],
                    cause_event_id=doc["cause_event_id"],
                    cause_event_type=doc["cause_event_type"],
                    channel=doc["channel"],
                    recipient_id=doc.get("recipient_id"),
                    template=doc["template"],
                    language=finished.get("language") or language_or_default(doc["language"]),
                    attempts=doc["attempts"],
                    message_id=finished.get("message_id"),
                )
                await self._append(doc, lambda n: n.record_sent(event), session)
            elif transition.state == "parked":
                event = NotificationFailed(
                    notification_id=doc["_id"],
                    cause_event_id=doc["cause_event_id"],
                    cause_event_type=doc["cause_event_type"],
                    channel=doc["channel"],
                    recipient_id=doc.get("recipient_id"),
                    reason=transition.reason or "",
                    attempts=doc["attempts"],
                    template=doc["template"],
                )
                await self._append(doc, lambda n: n.record_failed(event), session)
            return finished

        extra = await self.notifications.uow.run(work)
        OUTCOMES.labels(doc["kind"], doc["template"], transition.state).inc()
        log.info(
            f"notification.{transition.state}",
            notification_id=doc["_id"],
            cause_event_type=doc["cause_event_type"],
            channel=doc["channel"],
            template=doc["template"],
            attempts=doc["attempts"],
            reason=transition.reason,
        )
        return transition.state

    async def _append(self, doc, decide, session) -> None:
        await self.notifications.execute(
            doc["_id"], decide, ACTOR, causation_id=doc["cause_event_id"], session=session
        )
