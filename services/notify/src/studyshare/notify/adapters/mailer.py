"""Mail through SMTP with aiosmtplib.

Every message carries a `Message-ID` derived from its notification id, the same on every
attempt: when a send is repeated after an ambiguous crash (the server accepted, we died before
recording it), the receiver sees the same message twice and can keep one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

import aiosmtplib

from studyshare.notify.adapters.templates import RenderedMail
from studyshare.notify.domain.model import Permanent, Sent, Transient
from studyshare.notify.settings import NotifySettings


def message_id_for(notification_id: str, mail_from: str) -> str:
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "studyshare.local"
    return f"<{notification_id}@{domain}>"


def build_message(
    *,
    notification_id: str,
    mail_from: str,
    to: str,
    to_name: str | None,
    mail: RenderedMail,
    language: str,
    urgent: bool = False,
    now: datetime | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = formataddr((to_name or "", to))
    message["Subject"] = mail.subject
    message["Message-ID"] = message_id_for(notification_id, mail_from)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["X-StudyShare-Notification"] = notification_id
    message["Auto-Submitted"] = "auto-generated"
    if urgent:
        message["Importance"] = "high"
        message["X-Priority"] = "1"
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    message["Content-Language"] = language  # after the body: set_content drops Content-*
    return message


class SmtpMailer:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> Sent | Transient | Permanent:
        """Submit one message; a 5xx reply is permanent, anything else worth a retry."""
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_tls,
            tls_context=ssl.create_default_context() if (s.smtp_tls or s.smtp_starttls) else None,
            timeout=s.smtp_timeout_s,
        )
        try:
            await client.connect()  # with STARTTLS and AUTH as configured
            await client.send_message(message)
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await asyncio.wait_for(client.quit(), 1.0)  # accepted already: be brief
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            reason = f"recipient refused by the mail server ({', '.join(map(str, codes))})"
            return Permanent(reason) if all(c >= 500 for c in codes) else Transient(reason)
        except aiosmtplib.SMTPResponseException as exc:
            reason = f"mail server replied {exc.code}: {exc.message}"[:300]
            return Permanent(reason) if exc.code >= 500 else Transient(reason)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return Transient(f"mail server unreachable: {type(exc).__name__}: {exc}"[:300])
        finally:
            # drop the connection without waiting for a polite QUIT: an attempt that is cut
            # short (its lease) must end now, not after another server timeout
            client.close()
        return Sent(message_id=str(message["Message-ID"]))
