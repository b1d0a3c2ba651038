"""A stand-in service on the real plumbing CLI: `python fake_service.py NAME api|relay|worker`.

It answers `/api/notifications/env` (or the prefix of NAME) with the settings it was given,
so the LocalPlatform tests can check what each service process receives.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from fastapi import APIRouter

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.plumbing.cli import ServiceCLI
from studyshare.plumbing.http import create_app as plumbing_app
from studyshare.plumbing.http import kafka_ready
from studyshare.plumbing.projection import Projection, ProjectionContext
from studyshare.plumbing.settings import ServiceSettings

NAME = os.environ.get("FAKE_SERVICE", "notify")
SHOWN = (
    "STUDYSHARE_DATABASE",
    "STUDYSHARE_JWKS_URL",
    "STUDYSHARE_PUBLIC_BASE_URL",
    "STUDYSHARE_SMTP_PORT",
    "STUDYSHARE_SMS_URL",
    "STUDYSHARE_BOOTSTRAP_USER",
    "STUDYSHARE_KAFKA_BOOTSTRAP",
)


class CountEvents(Projection):
    """A trivial projection, so the worker has a topic to consume."""

    name = "fake_counter"
    topics = ("notify.events",)
    collections = ("counts",)

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        await ctx.collection("counts").update_one(
            {"_id": "events"}, {"$inc": {"n": len(events)}}, upsert=True, session=ctx.session
        )


def settings() -> ServiceSettings:
    return ServiceSettings(service_name=NAME)


def create_app():
    config = settings()
    router = APIRouter()

    @router.get(f"{SERVICE_BY_NAME[NAME].prefixes[0]}/env")
    async def env() -> dict[str, str | None]:
        return {key: os.environ.get(key) for key in SHOWN}

    return plumbing_app(
        config, title=NAME, routers=[router], readiness=[kafka_ready(config.kafka_bootstrap)]
    )


if __name__ == "__main__":
    os.environ["FAKE_SERVICE"] = NAME = sys.argv.pop(1)
    ServiceCLI(
        settings=settings,
        app_factory="fake_service:create_app",
        has_relay=SERVICE_BY_NAME[NAME].has_relay,
        projections=lambda s: [CountEvents()],
    )()
