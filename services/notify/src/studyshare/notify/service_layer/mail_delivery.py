"""Mail: the address and language of one recipient, the text rendered from what notify knows
at that moment (`domain.compose`), handed to the mail server."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.errors import HeaderParseError
from typing import Any

from studyshare.contracts.invitations import invitation_token
from studyshare.notify.adapters.mailer import build_message
from studyshare.notify.adapters.templates import render_mail
from studyshare.notify.domain import compose
from studyshare.notify.domain import reactions as r
from studyshare.notify.domain.model import (
    Intent,
    Outcome,
    Permanent,
    Skipped,
    Transient,
    language_or_default,
)
from studyshare.notify.domain.views import UserView
from studyshare.notify.service_layer.delivery import Delivery
from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

#: why a mail whose names or address break its headers is never sent (the same every attempt)
UNBUILDABLE = "the mail cannot be built: a name or the address does not fit in a mail header"


class MailDelivery(Delivery):
    """Sending one message by mail."""

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
        mail = render_mail(intent.template, language, context, self.settings.public_base_url)
        try:
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
        except (ValueError, HeaderParseError) as exc:
            return unbuildable(doc, exc), {}
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
                invitation_token=invitation_token(
                    self.settings.invitation_secret, ctx["bucket_id"], address
                )
                if template == r.INVITATION
                else None,
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
        if template == r.IDENTITY_LINKED:
            return compose.identity_linked_context(
                ctx, language, base_url=base, recipient=recipient
            )
        if template == r.REGISTRATION_PENDING:
            return compose.registration_pending_context(
                ctx, base_url=base, recipient=recipient, registrant=await d.user(ctx["user_id"])
            )
        raise ValueError(f"unknown mail template {template!r}")


def unbuildable(doc: dict[str, Any], exc: Exception) -> Permanent:
    """A permanent failure: the same names and address break the mail on every attempt. The
    log says which message and why, never the names or the address (nor the exception's text,
    which may quote them)."""
    log.warning(
        "notification.mail_unbuildable",
        notification_id=doc["_id"],
        template=doc["template"],
        error=type(exc).__name__,
    )
    return Permanent(f"{UNBUILDABLE} ({type(exc).__name__})")
