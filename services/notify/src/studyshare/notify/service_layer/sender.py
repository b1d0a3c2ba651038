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
import dataclasses
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from nacl.exceptions import CryptoError
from prometheus_client import Counter
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.notify import NotificationFailed, NotificationSent
from studyshare.notify.adapters.deliveries import DeliveryStore, intent_of, new_record
from studyshare.notify.adapters.directory import MongoDirectory
from studyshare.notify.adapters.mailer import SmtpMailer, build_message
from studyshare.notify.adapters.sms import HttpSmsGateway
from studyshare.notify.adapters.templates import render_mail, render_sms
from studyshare.notify.domain import compose
from studyshare.notify.domain import reactions as r
from studyshare.notify.domain.model import (
    Expanded,
    Intent,
    Outcome,
    Permanent,
    RetryPolicy,
    Sent,
    Skipped,
    Target,
    Transient,
    after_attempt,
    language_or_default,
)
from studyshare.notify.domain.notification import Notification
from studyshare.notify.domain.views import UserView
from studyshare.notify.settings import NotifySettings
from studyshare.plumbing.aggregate import Repository
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.logging import bind_correlation_id, clear_context, get_logger
from studyshare.plumbing.sealing import unseal

log = get_logger(__name__)

OUTCOMES = Counter(
    "studyshare_notifications_total",
    "Delivery attempts by channel, template and resulting state",
    ["channel", "template", "state"],
)
REDACTED_CODE = "******"
ACTOR = Actor.system("notify")


def utcnow() -> datetime:
    return datetime.now(UTC)


class LeaseLost(Exception):
    """Our claim ran out and someone else took the message: record nothing."""


class Sender:
    def __init__(
        self,
        db: AsyncDatabase,
        settings: NotifySettings,
        *,
        mailer: SmtpMailer | None = None,
        sms: HttpSmsGateway | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.store = DeliveryStore(db)
        self.directory = MongoDirectory(db)
        self.events = EventStore(db)
        self.notifications = Repository(self.events, Notification)
        self.mailer = mailer or SmtpMailer(settings)
        self.sms = sms or HttpSmsGateway(settings)
        self.clock = clock
        self.policy = RetryPolicy(
            settings.delivery_max_attempts,
            settings.delivery_backoff_base_s,
            settings.delivery_backoff_max_s,
        )
        self.lease = timedelta(seconds=settings.delivery_lease_s)

    async def start(self) -> None:
        await self.store.ensure_indexes()
        await self.events.ensure_indexes()

    # --- the loop ------------------------------------------------------------------------

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

    # --- one attempt ---------------------------------------------------------------------

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
        async with self.db.client.start_session() as session:
            async with await session.start_transaction():
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
                    extra = {**extra, "children": [c["_id"] for c in children]}
                if not await self.store.finish(doc, transition, now, extra, session=session):
                    raise LeaseLost(doc["_id"])
                if transition.state == "sent":
                    event = NotificationSent(
                        notification_id=doc["_id"],
                        cause_event_id=doc["cause_event_id"],
                        cause_event_type=doc["cause_event_type"],
                        channel=doc["channel"],
                        recipient_id=doc.get("recipient_id"),
                        template=doc["template"],
                        language=extra.get("language") or language_or_default(doc["language"]),
                        attempts=doc["attempts"],
                        message_id=extra.get("message_id"),
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

    # --- fan-out ---------------------------------------------------------------------------

    async def expand(self, doc: dict[str, Any], intent: Intent) -> Outcome:
        """A group, or the alert recipients, become one message per person (at this moment)."""
        target = intent.target
        targets: list[Target] = []
        context = dict(intent.context)
        if target.kind == "group":
            group = await self.directory.group(target.id)
            if group is None:
                return Transient(f"group {target.id} is not known yet")
            members = await self.directory.users(group.member_ids)
            targets = [
                Target("user", id=m)
                for m in group.member_ids
                if m not in members or (members[m].active and members[m].email)
            ]
            if not targets and group.email:
                targets = [Target("email", email=group.email)]
            if not targets:
                return Permanent(f"group {target.id} has no member with an e-mail address")
        else:
            people: list[UserView] = []
            if target.kind == "alert":
                department_id = target.id or await self._alert_department(context)
                if department_id is None and doc["attempts"] < self.policy.max_attempts:
                    return Transient("the sending department is not known yet")
                context["department_id"] = department_id
                if department_id:
                    people.extend(await self.directory.admins_of(department_id))
            people.extend(await self.directory.service_desk())
            targets = [Target("user", id=u.id) for u in people if u.email]
            if self.settings.service_desk_email:
                targets.append(Target("email", email=self.settings.service_desk_email))
            if not targets:
                return Permanent("nobody to tell: no department admin or service desk address")
        unique = list({t.key: t for t in targets}.values())
        return Expanded(
            tuple(dataclasses.replace(intent.child(t), context=context) for t in unique)
        )

    async def _alert_department(self, context: dict[str, Any]) -> str | None:
        if context.get("bucket_id"):
            bucket = await self.directory.bucket(context["bucket_id"])
            return bucket.sending_department_id if bucket else None
        if context.get("study_uid"):
            study = await self.directory.study(context["study_uid"])
            return study.department_id if study else None
        return None

    # --- mail --------------------------------------------------------------------------------

    async def send_mail(
        self, doc: dict[str, Any], intent: Intent
    ) -> tuple[Outcome, dict[str, Any]]:
        target = intent.target
        recipient: UserView | None = None
        to_name: str | None = None
        if target.kind == "user":
            recipient = await self.directory.user(target.id)
            if recipient is None:
                return Transient(f"recipient {target.id} is not known yet"), {}
            if not recipient.active:
                return Skipped("the recipient's account is deactivated"), {}
            if not recipient.email:
                return Permanent("the recipient has no e-mail address"), {}
            address, to_name = recipient.email, recipient.name
        elif target.kind == "department":
            department = await self.directory.department(target.id)
            if department is None:
                return Transient(f"department {target.id} is not known yet"), {}
            if not department.email:
                return Permanent("the department has no e-mail address"), {}
            address, to_name = department.email, department.name
        elif target.kind == "email" and target.email:
            address = target.email
        else:
            return Permanent(f"a mail cannot go to a {target.kind} target"), {}
        if intent.template == r.GROUP_CONFIRMATION_DUE:
            stale = await self._reminder_not_needed(doc, intent)
            if stale:
                return stale, {}
        language = language_or_default(
            intent.language or (recipient.language if recipient else None)
        )
        context = await self.mail_context(doc, intent, language, recipient, address)
        if isinstance(context, Transient):
            return context, {}
        mail = render_mail(intent.template, language, context)
        message = build_message(
            notification_id=doc["_id"],
            mail_from=self.settings.mail_from,
            to=address,
            to_name=to_name,
            mail=mail,
            language=language,
            urgent=bool(intent.context.get("urgent")),
            now=self.clock(),
        )
        outcome = await self.mailer.send(message)
        return outcome, {"address": address, "language": language}

    async def _reminder_not_needed(self, doc: dict[str, Any], intent: Intent) -> Skipped | None:
        """A reminder is moot once the member confirmed, left the group, or was already
        reminded of the same due date (identity may announce it more than once)."""
        group_id, due_iso = intent.context["group_id"], intent.context["due_since"]
        group = await self.directory.group(group_id)
        if group is not None:
            if intent.target.id not in group.member_ids:
                return Skipped("no longer a member of the group")
            if group.confirmed_since(str(intent.target.id), datetime.fromisoformat(due_iso)):
                return Skipped("the membership was confirmed meanwhile")
        already = await self.store.records.find_one(
            {
                "_id": {"$ne": doc["_id"]},
                "template": r.GROUP_CONFIRMATION_DUE,
                "recipient_id": intent.target.id,
                "context.group_id": group_id,
                "context.due_since": due_iso,
                "state": "sent",
            }
        )
        return Skipped("already reminded of this due date") if already else None

    def _may_wait(self, doc: dict[str, Any]) -> bool:
        """Missing details are waited for a while (another topic may lag), then sent without."""
        waited = self.clock() - (doc.get("cause_occurred_at") or self.clock())
        return (
            waited < timedelta(seconds=self.settings.study_details_wait_s)
            and doc["attempts"] < self.policy.max_attempts
        )

    async def mail_context(
        self,
        doc: dict[str, Any],
        intent: Intent,
        language: str,
        recipient: UserView | None,
        address: str,
    ) -> dict[str, Any] | Transient:
        ctx = intent.context
        base = self.settings.public_base_url
        d = self.directory
        template = intent.template
        if template in (r.SHARE, r.INVITATION):
            sender = await d.user(ctx.get("sender_id"))
            studies = await d.studies(ctx["study_uids"])
            if (sender is None or len(studies) < len(ctx["study_uids"])) and self._may_wait(doc):
                return Transient("the exam details are not known yet")
            return compose.share_context(
                ctx,
                language,
                base_url=base,
                recipient=recipient,
                sender=sender,
                department=await d.department(ctx.get("sending_department_id")),
                studies=studies,
                email=address if template == r.INVITATION else None,
            )
        if template == r.BUCKET_LOCKED:
            return compose.bucket_locked_context(
                ctx,
                language,
                base_url=base,
                recipient=recipient,
                locked_recipient=await d.user(ctx.get("recipient_id")),
                department=await d.department(ctx.get("department_id")),
            )
        if template == r.BREAK_THE_GLASS:
            return compose.break_the_glass_context(
                ctx,
                language,
                base_url=base,
                recipient=recipient,
                user=await d.user(ctx.get("user_id")),
                study=await d.study(ctx["study_uid"]),
                department=await d.department(ctx.get("department_id")),
            )
        if template == r.GROUP_CONFIRMATION_DUE:
            return compose.group_confirmation_context(
                ctx, base_url=base, recipient=recipient, group=await d.group(ctx["group_id"])
            )
        if template == r.GROUP_INVITATION:
            group = await d.group(ctx["group_id"])
            inviter = await d.user(ctx.get("invited_by"))
            if (group is None or inviter is None) and self._may_wait(doc):
                return Transient("the group or the inviter is not known yet")
            return compose.group_invitation_context(
                ctx, base_url=base, recipient=recipient, group=group, inviter=inviter
            )
        if template == r.GROUP_COMPOSITION_REPORTED:
            return compose.group_composition_reported_context(
                ctx,
                base_url=base,
                recipient=recipient,
                group=await d.group(ctx["group_id"]),
                reporter=await d.user(ctx.get("reported_by")),
            )
        if template == r.REGISTRATION_PENDING:
            return compose.registration_pending_context(
                ctx, base_url=base, recipient=recipient, registrant=await d.user(ctx["user_id"])
            )
        raise ValueError(f"unknown mail template {template!r}")

    # --- SMS ---------------------------------------------------------------------------------

    async def send_sms(self, doc: dict[str, Any], intent: Intent) -> tuple[Outcome, dict[str, Any]]:
        now = self.clock()
        with_code = intent.template in r.CODE_SMS_TEMPLATES
        if with_code and not intent.sealed_code:
            return Permanent("the one-time code is no longer available"), {}
        if intent.expires_at is not None and intent.expires_at <= now:
            return Permanent("the one-time code expired before it could be sent"), {}
        target = intent.target
        recipient: UserView | None = None
        if target.kind == "user":
            recipient = await self.directory.user(target.id)
            if recipient is None:
                return Transient(f"recipient {target.id} is not known yet"), {}
            if not recipient.mobile:
                return Permanent("the recipient has no registered mobile number"), {}
            mobile = recipient.mobile
        elif target.kind == "mobile" and target.mobile:
            mobile = target.mobile
        else:
            return Permanent(f"an SMS cannot go to a {target.kind} target"), {}
        language = language_or_default(
            intent.language or (recipient.language if recipient else None)
        )
        if not with_code:  # a notice: nothing secret in it
            text = render_sms(intent.template, language, compose.notice_context(intent.context))
            outcome = await self.sms.send(mobile, text)
            return outcome, {"address": mobile, "language": language, "redacted_text": text}
        try:
            code = unseal(intent.sealed_code, self.settings.otp_seal_private_key)
        except (CryptoError, ValueError):
            return Permanent("the one-time code cannot be opened with notify's key"), {}
        text = render_sms(intent.template, language, compose.otp_context(code, intent.expires_at))
        redacted = render_sms(
            intent.template, language, compose.otp_context(REDACTED_CODE, intent.expires_at)
        )
        del code
        outcome = await self.sms.send(mobile, text)
        return outcome, {"address": mobile, "language": language, "redacted_text": redacted}
