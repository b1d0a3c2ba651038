"""Issue points 1 and 5 end to end: the real worker (`python -m studyshare.notify worker`) reads
the real broker, queues, and sends through a real SMTP server; kill -9 mid-send and restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from studyshare.contracts.events.identity import UserProfileChanged
from studyshare.contracts.events.share import OTPRequested, RecipientRef, StudyShared
from studyshare.plumbing.sealing import DEV_PUBLIC_KEY, seal
from studyshare.plumbing.testing import publish_events

from .conftest import user_registered, worker_env


@pytest.fixture
async def source_db(mongo_db):
    """The outbox of the services whose events notify reads (identity, share)."""
    db = mongo_db.client[f"{mongo_db.name}_src"]
    try:
        yield db
    finally:
        await mongo_db.client.drop_database(db.name)


@pytest.fixture
def notify_worker(service_processes, real_infra, notify_settings):
    service_name = f"notify-{uuid.uuid4().hex[:8]}"  # its own consumer group

    def start() -> subprocess.Popen:
        env = worker_env(real_infra, notify_settings(), service_name)
        argv = [sys.executable, "-m", "studyshare.notify", "worker"]
        return service_processes.start(argv, env, f"worker-{len(service_processes.started)}")

    return start


async def publish(real_infra, db, envelopes) -> None:
    await publish_events(real_infra, envelopes, db)


def shares(events, tag: str, n: int) -> tuple[list, list[str]]:
    envelopes = [events(user_registered(f"usr_s_{tag}", "Sam", "Sender"), f"usr_s_{tag}")]
    addresses = []
    for i in range(n):
        uid = f"usr_{tag}_{i}"
        envelopes.append(events(user_registered(uid, "R", str(i)), uid))
        envelopes.append(
            events(
                StudyShared(
                    bucket_id=f"bkt_{tag}_{i}",
                    study_uids=("1.2.3",),
                    recipients=(RecipientRef(recipient_id=uid, kind="user"),),
                    sender_id=f"usr_s_{tag}",
                    access_level="images_report_read",
                    reason="r",
                    language="en",
                ),
                f"bkt_{tag}_{i}",
            )
        )
        addresses.append(f"{uid}@example.org")
    return envelopes, addresses


def ours(catcher, addresses: list[str]) -> list:
    """This test's mails (a new consumer group also reads earlier tests' events)."""
    return [m for m in catcher.messages() if m["To"].addresses[0].addr_spec in addresses]


async def our_records(db, addresses: list[str]) -> list[dict]:
    users = [a.partition("@")[0] for a in addresses]
    return await db.deliveries.find({"recipient_id": {"$in": users}}).to_list(None)


async def wait_until(check, timeout: float = 90.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def kill_9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


async def test_worker_killed_before_the_server_accepted_delivers_each_mail_exactly_once(
    real_infra, mongo_db, source_db, events, smtp_catcher, sms_sink, notify_worker
):
    tag = uuid.uuid4().hex[:6]
    envelopes, addresses = shares(events, tag, 5)
    mobile = f"+3247{uuid.uuid4().int % 10**7:07d}"
    envelopes.append(
        events(UserProfileChanged(user_id=f"usr_{tag}_0", mobile=mobile), f"usr_{tag}_0")
    )
    otp = (
        events(
            OTPRequested(
                bucket_id=f"bkt_{tag}_0",
                recipient_id=f"usr_{tag}_0",
                otp_id="otp_1",
                sealed_code=seal("731904", DEV_PUBLIC_KEY),
                expires_at=datetime.now(UTC) + timedelta(minutes=5),
            ),
            f"bkt_{tag}_0",
        ),
    )
    smtp_catcher.switch("hold-before-accept", True, only_to=tag)
    await publish(real_infra, source_db, envelopes)

    worker = notify_worker()
    await wait_until(lambda: smtp_catcher.holding)  # mid-send: DATA sent, no reply yet
    kill_9(worker)
    await asyncio.sleep(0.3)
    smtp_catcher.switch("hold-before-accept", False)  # the server sees the client gone

    notify_worker()  # restart: redelivered events, the lease of the killed send runs out
    await publish(real_infra, source_db, otp)
    await wait_until(lambda: len(ours(smtp_catcher, addresses)) >= len(addresses))
    await asyncio.sleep(3)  # room for any duplicate to show up

    mails = ours(smtp_catcher, addresses)
    assert sorted(m["To"].addresses[0].addr_spec for m in mails) == sorted(addresses)
    assert len({m["Message-ID"] for m in mails}) == len(addresses)
    await wait_until(lambda: any(m["to"] == mobile for m in sms_sink.received))
    [sms] = [m for m in sms_sink.received if m["to"] == mobile]
    assert "731904" in sms["text"], "the bucket OTP went by SMS through the same worker"
    records = await our_records(mongo_db, addresses)
    assert Counter((r["channel"], r["state"]) for r in records) == {
        ("mail", "sent"): len(addresses),
        ("sms", "sent"): 1,
    }
    assert max(r["attempts"] for r in records) == 2, "the killed send was taken again"
    ids = [r["_id"] for r in records]
    sent = await mongo_db.events.find(
        {"event_type": "NotificationSent", "aggregate_id": {"$in": ids}}
    ).to_list(None)
    assert sorted(e["aggregate_id"] for e in sent) == sorted(ids)


async def test_worker_killed_after_the_server_accepted_resends_with_the_same_message_id(
    real_infra, mongo_db, source_db, events, smtp_catcher, notify_worker
):
    """The ambiguous window: at-least-once. The copy carries the same Message-ID, so the
    mailbox can keep one; the log records one sent message and one NotificationSent."""
    tag = uuid.uuid4().hex[:6]
    envelopes, addresses = shares(events, tag, 2)
    smtp_catcher.switch("hold-after-accept", True, only_to=tag)
    await publish(real_infra, source_db, envelopes)

    worker = notify_worker()
    await wait_until(lambda: smtp_catcher.holding)  # stored, the 250 not yet sent
    kill_9(worker)
    smtp_catcher.switch("hold-after-accept", False)

    notify_worker()
    await wait_until(lambda: len(ours(smtp_catcher, addresses)) >= len(addresses) + 1)
    await asyncio.sleep(3)

    mails = ours(smtp_catcher, addresses)
    per_id = Counter(str(m["Message-ID"]) for m in mails)
    assert len(per_id) == len(addresses), "one message per recipient, as a mailbox sees it"
    # Only this test's mail and records: the new consumer group also reads earlier tests'
    # events from the shared topics, and their mail (some of it killed mid-send) is not ours.
    everything = Counter(str(m["Message-ID"]) for m in mails)
    assert max(everything.values()) == 2, "messages caught in the window came twice"
    assert set(everything.values()) <= {1, 2}, "and never more than twice"
    records = [r for r in await our_records(mongo_db, addresses) if r["kind"] == "mail"]
    assert len(records) == len(addresses)
    assert {r["state"] for r in records} == {"sent"}
    twice = {r["message_id"] for r in records if everything[r["message_id"]] == 2}
    assert twice and all(r["attempts"] == 2 for r in records if r["message_id"] in twice), (
        "a copy only comes from a send retaken after the kill"
    )
    sent = Counter(
        e["aggregate_id"]
        for e in await mongo_db.events.find(
            {
                "event_type": "NotificationSent",
                "payload.channel": "mail",
                "aggregate_id": {"$in": [r["_id"] for r in records]},
            }
        ).to_list(None)
    )
    assert sent == Counter(r["_id"] for r in records), "one NotificationSent per message"
