"""structlog JSON logging with a correlation id that follows a request into its events."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar

import structlog

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

#: keys that must never reach a log line
REDACTED_KEYS = frozenset(
    {
        "password",
        "otp",
        "code",
        "pincode",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "authorization",
        "first_name",
        "last_name",
        "patient_name",
        "date_of_birth",
    }
)


#: what a client's `X-Correlation-ID` may look like to be taken: a short token of letters,
#: digits and `._:-` (a UUID, `e2e-<uuid>`, a trace id). Anything else (too long, spaces,
#: control characters, markup) is replaced by a fresh id: it would reach every log line and
#: event envelope of the request.
SAFE_CORRELATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def safe_correlation_id(value: str | None) -> str | None:
    """`value` if it is a safe correlation id, else None (the caller makes a new one)."""
    if value and SAFE_CORRELATION_ID.fullmatch(value):
        return value
    return None


def current_correlation_id() -> str:
    """The correlation id of the work in progress, made up if there is none."""
    cid = _correlation_id.get()
    if cid is None:
        cid = str(uuid.uuid4())
        bind_correlation_id(cid)
    return cid


def bind_correlation_id(correlation_id: str) -> None:
    _correlation_id.set(correlation_id)
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


def clear_context() -> None:
    _correlation_id.set(None)
    structlog.contextvars.clear_contextvars()


def _redact(_: object, __: str, event_dict: dict) -> dict:
    for key in list(event_dict):
        if key.lower() in REDACTED_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Route structlog and stdlib logging to one JSON line per record on stdout."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faust", "mode", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
