"""Notify's SMTP and SMS adapters against the mail catcher `make run` uses (a real process),
read back over its HTTP API as a developer would."""

from __future__ import annotations

import sys
import uuid

import httpx

from studyshare.notify.adapters.mailer import SmtpMailer, build_message
from studyshare.notify.adapters.sms import HttpSmsGateway
from studyshare.notify.adapters.templates import RenderedMail, text_to_html
from studyshare.notify.domain.model import Sent
from studyshare.notify.settings import NotifySettings
from studyshare.plumbing.infra import free_port, wait_for_port


async def test_mail_and_sms_reach_the_local_mail_catcher(real_infra, service_processes):
    smtp_port, http_port = free_port(), free_port()
    env = service_processes.env("unused", "mailcatcher")
    catcher = service_processes.start(
        [
            sys.executable,
            "-m",
            "studyshare.devstack",
            "mailcatcher",
            "--smtp-port",
            str(smtp_port),
            "--http-port",
            str(http_port),
        ],
        env,
        "mailcatcher",
    )
    wait_for_port(smtp_port, 30, catcher)
    wait_for_port(http_port, 30, catcher)
    base = f"http://127.0.0.1:{http_port}"
    settings = NotifySettings(
        environment="test",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        sms_url=f"{base}/dev/sms",
        sms_token="local",
    )
    to = f"dr.{uuid.uuid4().hex[:6]}@example.org"
    text = "Dr. Peeters shared an exam with you.\nhttps://studyshare.example/studies/1.2.3\n"
    mail = RenderedMail(
        subject="Urgent: an exam was shared with you", text=text, html=text_to_html(text)
    )
    message = build_message(
        notification_id="ntf_local",
        mail_from=settings.mail_from,
        to=to,
        to_name="Dr. Who",
        mail=mail,
        language="en",
        urgent=True,
    )
    assert isinstance(await SmtpMailer(settings).send(message), Sent)
    assert isinstance(await HttpSmsGateway(settings).send("+32470000099", "code 123456"), Sent)

    async with httpx.AsyncClient(base_url=base) as client:
        [caught] = (await client.get("/dev/mail", params={"to": to})).json()
        assert caught["subject"] == "Urgent: an exam was shared with you"
        assert caught["message_id"] == message["Message-ID"]
        full = (await client.get(f"/dev/mail/{caught['id']}")).json()
        assert "https://studyshare.example/studies/1.2.3" in full["text"]
        [sms] = (await client.get("/dev/sms", params={"to": "+32470000099"})).json()
        assert sms["text"] == "code 123456"
