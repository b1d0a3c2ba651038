"""The delivery log: one record per message, keyed by its notification id.

States: pending -> sending -> sent | retry (-> sending ...) | parked; a target that stands for
several persons (a group, the alert recipients) goes pending -> sending -> expanded and adds one
record per person. A record is claimed with one atomic update (state `sending`, a lease and a
claim token), so two senders never hold the same message; a sender that dies mid-send leaves a
lease that runs out, and the message is claimed again (see `service_layer.sender` on the
ambiguous window).

Records never hold a message's text: the template, the language, the address and, for an SMS,
a redacted text. A one-time code is kept sealed (only notify's private key opens it) until the
message leaves the queue, then removed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.notify.domain.model import Intent, Target, Transition

DELIVERIES = "deliveries"


def intent_of(doc: dict[str, Any]) -> Intent:
    return Intent(
        cause_event_id=doc["cause_event_id"],
        cause_event_type=doc["cause_event_type"],
        channel=doc["channel"],
        target=Target.from_doc(doc["target"]),
        template=doc["template"],
        language=doc.get("language"),
        context=doc.get("context") or {},
        sealed_code=doc.get("sealed_code"),
        expires_at=doc.get("expires_at"),
    )


def new_record(
    intent: Intent,
    *,
    now: datetime,
    cause_occurred_at: datetime | None = None,
    correlation_id: str | None = None,
    parent_id: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": intent.id,
        "kind": intent.kind,
        "channel": intent.channel,
        "cause_event_id": intent.cause_event_id,
        "cause_event_type": intent.cause_event_type,
        "cause_occurred_at": cause_occurred_at or now,
        "correlation_id": correlation_id,
        "target": intent.target.to_doc(),
        "recipient_id": intent.target.recipient_id,
        "template": intent.template,
        "language": intent.language,
        "context": intent.context,
        "state": "pending",
        "attempts": 0,
        "due_at": now,
        "created_at": now,
        "parent_id": parent_id,
    }
    if intent.sealed_code is not None:
        doc["sealed_code"] = intent.sealed_code
    if intent.expires_at is not None:
        doc["expires_at"] = intent.expires_at
    return doc


class DeliveryStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        self.records = db[DELIVERIES]

    async def ensure_indexes(self) -> None:
        await self.records.create_index([("state", ASCENDING), ("due_at", ASCENDING)], name="due")
        await self.records.create_index(
            [("state", ASCENDING), ("lease_until", ASCENDING)], name="lease"
        )
        await self.records.create_index("cause_event_id", name="cause")
        await self.records.create_index("recipient_id", name="recipient")
        await self.records.create_index([("created_at", DESCENDING)], name="newest")

    async def add(
        self, docs: Sequence[dict[str, Any]], session: AsyncClientSession | None = None
    ) -> None:
        """Insert records that are not there yet (a record that exists is left as it is)."""
        if docs:
            await self.records.bulk_write(
                [UpdateOne({"_id": d["_id"]}, {"$setOnInsert": d}, upsert=True) for d in docs],
                ordered=False,
                session=session,
            )

    async def claim(self, now: datetime, lease: timedelta) -> dict[str, Any] | None:
        """Take an overdue message: one whose sender's lease ran out, else the most overdue due
        pending/retry one. Each kind is read along its index ("lease", "due"), then taken by a
        compare-and-set on its id, claim and attempts (another sender may have taken it
        meanwhile: then the next one). On the local database an `$or` of the two kinds is a
        collection scan, and so is every `findAndModify` that modifies (0.9 s and 0.2 s at
        50,000 / 20,000 records: `bench/notify_claim.py`)."""
        taken = {"state": "sending", "lease_until": now + lease, "claimed_at": now}
        for overdue, order in (
            ({"state": "sending", "lease_until": {"$lte": now}}, "lease_until"),
            ({"state": {"$in": ["pending", "retry"]}, "due_at": {"$lte": now}}, "due_at"),
        ):
            while doc := await self.records.find_one(overdue, sort=[(order, ASCENDING)]):
                attempts, claim = doc.get("attempts"), doc.get("claim")
                unchanged = overdue | {"_id": doc["_id"], "claim": claim, "attempts": attempts}
                mine = taken | {"claim": uuid.uuid4().hex, "attempts": (attempts or 0) + 1}
                if (await self.records.update_one(unchanged, {"$set": mine})).modified_count:
                    return doc | mine
        return None

    async def hand_over(
        self, doc: dict[str, Any], message_id: str | None, extra: dict[str, Any], now: datetime
    ) -> None:
        """Note at once, in one small write, that the server accepted this attempt's message:
        if the sender dies before `finish`, the next attempt records it instead of sending
        it again."""
        handed = {"at": now, "message_id": message_id, "extra": extra}
        await self.records.update_one(
            {"_id": doc["_id"], "claim": doc["claim"]}, {"$set": {"handed_over": handed}}
        )

    async def finish(
        self,
        doc: dict[str, Any],
        transition: Transition,
        now: datetime,
        extra: dict[str, Any] | None = None,
        session: AsyncClientSession | None = None,
    ) -> bool:
        """Record the attempt's end; False when our claim was lost (lease ran out, retaken)."""
        update: dict[str, Any] = {"state": transition.state, "updated_at": now, **(extra or {})}
        unset: dict[str, str] = {"lease_until": "", "claim": ""}
        if transition.state == "retry":
            update["due_at"] = transition.due_at
            update["last_error"] = transition.reason
        elif transition.state in ("parked", "skipped"):
            update["reason"] = transition.reason
            update[f"{transition.state}_at"] = now
        if transition.state in ("sent", "expanded", "skipped") or (
            transition.state == "parked" and doc.get("expires_at") is not None
        ):
            # the code is of no use any more: forget even its sealed form
            unset["sealed_code"] = ""
        if transition.state == "sent":
            update["sent_at"] = now
            unset["context.message"] = ""
        result = await self.records.update_one(
            {"_id": doc["_id"], "claim": doc["claim"], "state": "sending"},
            {"$set": update, "$unset": unset},
            session=session,
        )
        return result.modified_count == 1

    async def requeue(
        self, notification_id: str, now: datetime, session: AsyncClientSession | None = None
    ) -> bool:
        result = await self.records.update_one(
            {"_id": notification_id, "state": "parked"},
            {
                "$set": {"state": "pending", "due_at": now, "attempts": 0, "requeued_at": now},
                "$unset": {"reason": "", "parked_at": ""},
            },
            session=session,
        )
        return result.modified_count == 1

    async def get(self, notification_id: str) -> dict[str, Any] | None:
        return await self.records.find_one({"_id": notification_id})

    async def find(self, query: dict[str, Any], limit: int = 200) -> list[dict[str, Any]]:
        """Newest first."""
        cursor = self.records.find(query).sort([("created_at", DESCENDING), ("_id", ASCENDING)])
        cursor = cursor.limit(limit)
        return await cursor.to_list(None)
