"""The local mail catcher and SMS sink, one process.

An SMTP server (aiosmtpd) keeps every message; an HTTP API reads them (`GET /dev/mail`,
`GET /dev/mail/{id}`, `DELETE /dev/mail`), takes SMS (`POST /dev/sms`, optionally behind a
bearer credential) and lists them (`GET /dev/sms`); `/` (and `/dev/`) is a small page to read
both, `/dev/mail/{id}/view` one mail, `/dev/mail/{id}/raw` its RFC 822 source.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from studyshare.devstack.inbox import Inbox, parse_mail
from studyshare.devstack.mailpage import render_index, render_mail
from studyshare.devstack.problem import PROBLEM, problem_body
from studyshare.devstack.settings import MailCatcherSettings
from studyshare.plumbing.logging import configure_logging, get_logger

log = get_logger(__name__)


class SmsIn(BaseModel):
    to: str = Field(min_length=3, max_length=32)
    text: str = Field(min_length=1, max_length=2000)
    sender: str | None = Field(default=None, max_length=64)


class InboxHandler:
    """aiosmtpd handler: every accepted message goes to the inbox."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        mail = parse_mail(raw, envelope.mail_from or "", list(envelope.rcpt_tos))
        self.inbox.add_mail(mail)
        log.info("mail.caught", mail_id=mail.id, recipients=len(mail.envelope_to), size=mail.size)
        return "250 Message accepted for delivery"


def _problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = problem_body(status, title, detail, **extra)
    return Response(body, status_code=status, media_type=PROBLEM.decode())


def create_app(
    settings: MailCatcherSettings | None = None, inbox: Inbox | None = None
) -> Starlette:
    """The HTTP API; its lifespan also runs the SMTP server on the same event loop."""
    settings = settings or MailCatcherSettings()
    inbox = inbox or Inbox(settings.mail_keep)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(InboxHandler(inbox), hostname="mailcatcher.local", enable_SMTPUTF8=True),
            host=settings.mail_host,
            port=settings.mail_smtp_port,
        )
        log.info(
            "mailcatcher.started",
            smtp_port=settings.mail_smtp_port,
            http_port=settings.mail_http_port,
            sms_token_required=bool(settings.sms_token),
        )
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()

    async def index(_: Request) -> Response:
        return HTMLResponse(render_index(inbox.find_mails(), inbox.find_sms()))

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_mail(request: Request) -> Response:
        found = inbox.find_mails(request.query_params.get("to"))
        return JSONResponse([m.as_dict() for m in found])

    async def get_mail(request: Request) -> Response:
        mail = inbox.mail(request.path_params["mail_id"])
        if mail is None:
            return _problem(404, "Not Found", "No such mail")
        return JSONResponse(mail.as_dict())

    async def view_mail(request: Request) -> Response:
        mail = inbox.mail(request.path_params["mail_id"])
        if mail is None:
            return _problem(404, "Not Found", "No such mail")
        return HTMLResponse(render_mail(mail))

    async def raw_mail(request: Request) -> Response:
        mail = inbox.mail(request.path_params["mail_id"])
        if mail is None:
            return _problem(404, "Not Found", "No such mail")
        return Response(mail.raw, media_type="message/rfc822")

    async def clear_mail(_: Request) -> Response:
        inbox.mails.clear()
        return Response(status_code=204)

    async def post_sms(request: Request) -> Response:
        if settings.sms_token and not _bearer_ok(request, settings.sms_token):
            return _problem(401, "Unauthorized", "A valid bearer credential is required")
        try:
            sms = SmsIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return _problem(422, "Invalid request", str(exc.error_count()) + " invalid field(s)")
        stored = inbox.add_sms(sms.to, sms.text, sms.sender)
        log.info("sms.caught", sms_id=stored.id)
        return JSONResponse(stored.as_dict(), status_code=201)

    async def list_sms(request: Request) -> Response:
        return JSONResponse([s.as_dict() for s in inbox.find_sms(request.query_params.get("to"))])

    async def clear_sms(_: Request) -> Response:
        inbox.sms.clear()
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/dev", index),
            Route("/dev/", index),
            Route("/healthz", healthz),
            Route("/dev/mail", list_mail, methods=["GET"]),
            Route("/dev/mail", clear_mail, methods=["DELETE"]),
            Route("/dev/mail/{mail_id}", get_mail, methods=["GET"]),
            Route("/dev/mail/{mail_id}/raw", raw_mail, methods=["GET"]),
            Route("/dev/mail/{mail_id}/view", view_mail, methods=["GET"]),
            Route("/dev/sms", list_sms, methods=["GET"]),
            Route("/dev/sms", post_sms, methods=["POST"]),
            Route("/dev/sms", clear_sms, methods=["DELETE"]),
        ],
        lifespan=lifespan,
    )
    app.state.inbox = inbox
    return app


def _bearer_ok(request: Request, token: str) -> bool:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.encode(), token.encode())


def serve(settings: MailCatcherSettings) -> None:
    """Run SMTP and HTTP until SIGTERM/SIGINT."""
    configure_logging("mailcatcher", settings.log_level, settings.log_json)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP line
    uvicorn.run(
        create_app(settings),
        host=settings.mail_host,
        port=settings.mail_http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
