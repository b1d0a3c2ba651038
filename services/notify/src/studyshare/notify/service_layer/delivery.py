"""What every delivery job of the sender works with: the delivery log, the directory, the
event store, the mail and SMS clients, the retry policy and the clock. MongoDB's, or, in
tests that run without a database, the ones given (an in-memory event store and log)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.notify.adapters.deliveries import DeliveryStore
from studyshare.notify.adapters.directory import MongoDirectory
from studyshare.notify.adapters.mailer import SmtpMailer
from studyshare.notify.adapters.sms import HttpSmsGateway
from studyshare.notify.domain.model import RetryPolicy
from studyshare.notify.domain.notification import Notification
from studyshare.notify.settings import NotifySettings
from studyshare.plumbing.aggregate import Events, Repository
from studyshare.plumbing.eventstore import EventStore


def utcnow() -> datetime:
    return datetime.now(UTC)


class Delivery:
    """The stores, clients and policy of the sender's jobs."""

    def __init__(
        self,
        db: AsyncDatabase | None,
        settings: NotifySettings,
        *,
        mailer: SmtpMailer | None = None,
        sms: HttpSmsGateway | None = None,
        clock: Callable[[], datetime] = utcnow,
        store: DeliveryStore | None = None,
        directory: MongoDirectory | None = None,
        events: Events | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.store = store or DeliveryStore(db)
        self.directory = directory or MongoDirectory(db)
        self.events = events or EventStore(db)
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
