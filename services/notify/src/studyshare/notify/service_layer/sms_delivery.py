"""SMS: notices and one-time codes (opened with notify's key only to send them; the record
keeps the text with the code redacted)."""

from __future__ import annotations

from typing import Any

from nacl.exceptions import CryptoError

from studyshare.notify.adapters.templates import render_sms
from studyshare.notify.domain import compose
from studyshare.notify.domain import reactions as r
from studyshare.notify.domain.model import (
    Intent,
    Outcome,
    Permanent,
    Transient,
    language_or_default,
)
from studyshare.notify.domain.views import UserView
from studyshare.notify.service_layer.delivery import Delivery
from studyshare.plumbing.sealing import unseal

REDACTED_CODE = "******"


class SmsDelivery(Delivery):
    """Sending one message by SMS."""

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
