"""Issue point 5: exactly one delivery per (event, recipient, channel); retries with backoff;
parked messages visible to operators and re-queued by them; NotificationSent/Failed events."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.notify.adapters.deliveries import DeliveryStore
from studyshare.notify.domain.model import Sent
from studyshare.notify.entrypoints.api import create_app
from studyshare.notify.service_layer import operations
from studyshare.notify.service_layer.sender import LeaseLost, Sender, utcnow
from studyshare.plumbing.eventstore import EventStore

from .conftest import apply, drain, events_of, user_registered


def share_with(events, bucket: str, *recipients: str, **fields):
    refs = tuple(
        RecipientRef(recipient_id=r, kind="email", email=r)
        if "@" in r
        else RecipientRef(recipient_id=r, kind="user")
        for r in recipients
    )
    return events(
        StudyShared(
            bucket_id=bucket,
            study_uids=("1.2.3",),
            recipients=refs,
            sender_id="usr_s",
            access_level="images_report_read",
            reason="r",
            language="en",
            **fields,
        ),
        bucket,
    )


async def test_a_redelivered_event_is_mailed_once(mongo_db, events, notify_settings, smtp_catcher):
    """The same batch applied again (consumer restart, relay retry) and a brand-new runner
    (fresh process) queue nothing new; the message id is derived from the cause."""
    settings = notify_settings()
    batch = [
        events(user_registered("usr_s", "Sam", "S"), "usr_s"),
        events(user_registered("usr_r", "Rik", "R"), "usr_r"),
        share_with(events, "bkt_1", "usr_r"),
    ]
    await apply(mongo_db, batch)
    await drain(Sender(mongo_db, settings))
    await apply(mongo_db, batch)
    await apply(mongo_db, batch[-1:])
    # a consumer that lost its checkpoints would apply it once more: the delivery log says no
    await mongo_db["reactions.g0._checkpoints"].delete_many({})
    await apply(mongo_db, batch[-1:])
    await drain(Sender(mongo_db, settings))

    assert len(smtp_catcher.messages()) == 1
    assert await mongo_db.deliveries.count_documents({}) == 1
    assert len(await events_of(mongo_db, "NotificationSent")) == 1


async def test_two_senders_never_send_the_same_message(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings(delivery_concurrency=3)
    people = [events(user_registered(f"usr_{i}", "R", str(i)), f"usr_{i}") for i in range(12)]
    shares = [share_with(events, f"bkt_{i}", f"usr_{i}") for i in range(12)]
    await apply(mongo_db, [events(user_registered("usr_s", "Sam", "S"), "usr_s"), *people, *shares])

    senders = [asyncio.create_task(Sender(mongo_db, settings).run()) for _ in range(2)]
    try:
        assert await smtp_catcher.wait_for(lambda m: len(m) >= 12)
        await asyncio.sleep(0.5)
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

    ids = [m["Message-ID"] for m in smtp_catcher.messages()]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert len(await events_of(mongo_db, "NotificationSent")) == 12


async def test_a_sender_that_died_mid_send_is_replaced_when_its_lease_runs_out(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings(delivery_lease_s=30)
    await apply(
        mongo_db,
        [
            events(user_registered("usr_s", "Sam", "S"), "usr_s"),
            events(user_registered("usr_r", "Rik", "R"), "usr_r"),
            share_with(events, "bkt_1", "usr_r"),
        ],
    )
    dead = Sender(mongo_db, settings)
    claimed = await dead.store.claim(utcnow(), dead.lease)  # ... and then it died
    assert claimed["state"] == "sending"
    assert await Sender(mongo_db, settings).run_until_idle() == 0, "held by a live lease"

    later = Sender(mongo_db, settings, clock=lambda: utcnow() + timedelta(seconds=31))
    assert await later.run_until_idle() == 1
    # a sender that only seemed dead (paused past its lease) reports too late: nothing changes
    with pytest.raises(LeaseLost):
        await dead.record(claimed, Sent(message_id="<late@x>"), {})

    [mail] = smtp_catcher.messages()
    record = await mongo_db.deliveries.find_one()
    assert (record["state"], record["attempts"]) == ("sent", 2)
    assert mail["Message-ID"] == record["message_id"]
    assert len(await events_of(mongo_db, "NotificationSent")) == 1


async def test_a_sender_killed_while_recording_an_accepted_mail_does_not_send_it_again(
    mongo_db, events, notify_settings, smtp_catcher
):
    """The server accepted the mail and the sender heard so, then died before the outcome
    was recorded (the recording transaction is the slow part of an attempt). The hand-off
    stored right after the server's reply tells the next sender: it records the message as
    sent without a second copy."""
    settings = notify_settings(delivery_lease_s=30)
    await apply(
        mongo_db,
        [
            events(user_registered("usr_s", "Sam", "S"), "usr_s"),
            events(user_registered("usr_r", "Rik", "R"), "usr_r"),
            share_with(events, "bkt_1", "usr_r"),
        ],
    )

    class KilledWhileRecording(Sender):
        async def record(self, doc, outcome, extra):
            raise RuntimeError("SIGKILL")

    assert await KilledWhileRecording(mongo_db, settings).run_until_idle() == 1
    assert len(smtp_catcher.messages()) == 1
    assert (await mongo_db.deliveries.find_one())["state"] == "sending"

    later = Sender(mongo_db, settings, clock=lambda: utcnow() + timedelta(seconds=31))
    assert await later.run_until_idle() == 1

    [mail] = smtp_catcher.messages()
    record = await mongo_db.deliveries.find_one()
    assert (record["state"], record["attempts"]) == ("sent", 2)
    assert record["message_id"] == mail["Message-ID"]
    assert record["address"] == "usr_r@example.org"
    assert len(await events_of(mongo_db, "NotificationSent")) == 1


async def test_transient_failures_back_off_then_park_and_an_operator_requeues(
    mongo_db, events, notify_settings, smtp_catcher, test_tokens
):
    """451 from the mail server: retried with growing delays, parked after the last attempt
    with its reason (NotificationFailed); the service desk sees it and sends it again."""
    settings = notify_settings(delivery_max_attempts=3, delivery_backoff_base_s=0.1)
    await apply(
        mongo_db,
        [
            events(user_registered("usr_s", "Sam", "S"), "usr_s"),
            events(user_registered("usr_r", "Rik", "R", email="busy@example.org"), "usr_r"),
            share_with(events, "bkt_1", "usr_r"),
        ],
    )
    sender = Sender(mongo_db, settings)
    await sender.run_until_idle()
    first = await mongo_db.deliveries.find_one()
    assert (first["state"], first["attempts"]) == ("retry", 1)
    assert "451" in first["last_error"]
    delay_1 = first["due_at"] - first["updated_at"]
    await asyncio.sleep(0.15)
    await sender.run_until_idle()
    second = await mongo_db.deliveries.find_one()
    assert (second["state"], second["attempts"]) == ("retry", 2)
    delay_2 = second["due_at"] - second["updated_at"]
    assert delay_2 >= 2 * delay_1 - timedelta(milliseconds=5), "exponential backoff"
    await drain(sender)

    parked = await mongo_db.deliveries.find_one()
    assert (parked["state"], parked["attempts"]) == ("parked", 3)
    assert "451" in parked["reason"] and "after 3 attempts" in parked["reason"]
    [failed] = await events_of(mongo_db, "NotificationFailed")
    assert failed["aggregate_id"] == parked["_id"]
    assert failed["payload"]["attempts"] == 3 and failed["payload"]["reason"] == parked["reason"]
    assert smtp_catcher.messages() == []

    app = create_app()
    test_tokens.install(app)
    app.state.db = mongo_db
    desk = test_tokens.user("usr_desk", "service_desk")
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
        response = await client.get("/api/notifications/parked", headers=desk)
        assert response.status_code == 200
        [item] = response.json()["items"]
        assert item["id"] == parked["_id"] and item["reason"] == parked["reason"]
        assert item["address"] == "busy@example.org" and item["template"] == "share"

        physician = test_tokens.user("usr_doc", "physician")
        assert (await client.get("/api/notifications/parked", headers=physician)).status_code == 403
        assert (await client.get("/api/notifications/parked")).status_code == 401
        refused = await client.post(f"/api/notifications/{parked['_id']}/retry", headers=physician)
        assert refused.status_code == 403

        smtp_catcher.switch("busy-ok", True)  # the mail server is fine again
        response = await client.post(f"/api/notifications/{parked['_id']}/retry", headers=desk)
        assert response.status_code == 202
        assert response.json()["state"] == "pending" and response.json()["attempts"] == 0
        [requeued] = await events_of(mongo_db, "NotificationRequeued")
        assert requeued["payload"]["requeued_by"] == "usr_desk"
        assert requeued["actor"]["id"] == "usr_desk"

        await drain(sender)
        assert len(smtp_catcher.to("busy@example.org")) == 1
        [sent] = await events_of(mongo_db, "NotificationSent")
        assert sent["aggregate_id"] == parked["_id"] and sent["aggregate_version"] == 3

        again = await client.post(f"/api/notifications/{parked['_id']}/retry", headers=desk)
        assert again.status_code == 409 and again.json()["rule"] == "NotificationNotParked"
        unknown = await client.post(f"/api/notifications/ntf_{'0' * 24}/retry", headers=desk)
        assert unknown.status_code == 404 and unknown.json()["rule"] == "NotificationNotFound"

        cause = str(parked["cause_event_id"])
        response = await client.get(
            "/api/notifications", params={"cause_event_id": cause}, headers=desk
        )
        [item] = response.json()["items"]
        assert item["state"] == "sent" and item["message_id"].startswith(f"<{parked['_id']}@")
        auditor = test_tokens.user("usr_aud", "auditor")
        response = await client.get(
            "/api/notifications", params={"cause_event_id": cause}, headers=auditor
        )
        assert response.status_code == 200


async def test_a_refused_address_is_parked_at_once(mongo_db, events, notify_settings, smtp_catcher):
    settings = notify_settings(delivery_max_attempts=5)
    await apply(
        mongo_db,
        [
            events(user_registered("usr_s", "Sam", "S"), "usr_s"),
            share_with(events, "bkt_1", "refuse@example.org", "ok@example.org"),
        ],
    )
    await drain(Sender(mongo_db, settings))

    store = DeliveryStore(mongo_db)
    by_address = {d["target"]["email"]: d for d in await store.find({})}
    refused = by_address["refuse@example.org"]
    assert (refused["state"], refused["attempts"]) == ("parked", 1)
    assert "550" in refused["reason"]
    assert by_address["ok@example.org"]["state"] == "sent"
    assert [m["To"].addresses[0].addr_spec for m in smtp_catcher.messages()] == ["ok@example.org"]


async def test_a_recipient_whose_name_breaks_the_mail_is_parked_at_once(
    mongo_db, events, notify_settings, smtp_catcher
):
    """A name stored before identity refused line breaks: no retry can build that mail."""
    settings = notify_settings(delivery_max_attempts=5)
    await apply(
        mongo_db,
        [
            events(user_registered("usr_s", "Sam", "S"), "usr_s"),
            events(user_registered("usr_eve", "Eve\r\nBcc: victim@evil.example", "E"), "usr_eve"),
            events(user_registered("usr_r", "Rik", "R"), "usr_r"),
            share_with(events, "bkt_1", "usr_eve", "usr_r"),
        ],
    )
    await drain(Sender(mongo_db, settings))

    by_recipient = {d["recipient_id"]: d for d in await DeliveryStore(mongo_db).find({})}
    eve = by_recipient["usr_eve"]
    assert (eve["state"], eve["attempts"]) == ("parked", 1)
    assert eve["reason"].startswith("the mail cannot be built")
    assert by_recipient["usr_r"]["state"] == "sent"
    assert [str(m["To"]) for m in smtp_catcher.messages()] == ["Rik R <usr_r@example.org>"]
    [failed] = await events_of(mongo_db, "NotificationFailed")
    assert (failed["payload"]["recipient_id"], failed["payload"]["attempts"]) == ("usr_eve", 1)


async def test_a_mail_server_that_is_down_is_a_transient_failure(
    mongo_db, events, notify_settings, smtp_catcher
):
    from studyshare.plumbing.infra import free_port

    settings = notify_settings(smtp_port=free_port(), delivery_max_attempts=2)
    await apply(
        mongo_db,
        [
            events(user_registered("usr_s", "Sam", "S"), "usr_s"),
            share_with(events, "bkt_1", "ok@example.org"),
        ],
    )
    await drain(Sender(mongo_db, settings))

    record = await mongo_db.deliveries.find_one()
    assert (record["state"], record["attempts"]) == ("parked", 2)
    assert record["reason"].startswith("mail server unreachable")


async def test_rebuilding_the_reactions_projection_sends_nothing_again(
    mongo_db, events, notify_settings, smtp_catcher
):
    """A replay builds a new generation from offset 0; the delivery log is outside generations,
    so every message it finds is already there."""
    from studyshare.notify.__main__ import projections
    from studyshare.plumbing.projection import ProjectionRunner

    settings = notify_settings()
    batch = [
        events(user_registered("usr_s", "Sam", "S"), "usr_s"),
        events(user_registered("usr_r", "Rik", "R"), "usr_r"),
        share_with(events, "bkt_1", "usr_r"),
    ]
    await apply(mongo_db, batch)
    await drain(Sender(mongo_db, settings))
    for projection in projections(settings):
        await ProjectionRunner(projection, mongo_db).apply_batch(batch, generation=1)
    await drain(Sender(mongo_db, settings))

    assert len(smtp_catcher.messages()) == 1
    assert await mongo_db.deliveries.count_documents({}) == 1


async def test_events_older_than_the_reaction_horizon_send_nothing(
    mongo_db, events, notify_settings, smtp_catcher
):
    """A new consumer reading years of history must not mail every old share again."""
    settings = notify_settings()
    old = utcnow() - timedelta(days=3)
    batch = [
        events(user_registered("usr_s", "Sam", "S"), "usr_s"),
        events(user_registered("usr_r", "Rik", "R"), "usr_r"),
        events(
            StudyShared(
                bucket_id="bkt_old",
                study_uids=("1.2.3",),
                recipients=(RecipientRef(recipient_id="usr_r", kind="user"),),
                sender_id="usr_s",
                access_level="images_report_read",
                reason="r",
                language="en",
            ),
            "bkt_old",
            occurred_at=old,
        ),
    ]
    await apply(mongo_db, batch, settings)
    await drain(Sender(mongo_db, settings))

    assert smtp_catcher.messages() == []
    assert await mongo_db.deliveries.count_documents({}) == 0


async def test_an_operator_reads_one_message_and_its_children(
    mongo_db, events, notify_settings, smtp_catcher, test_tokens
):
    from studyshare.contracts.events.identity import GroupCreated

    settings = notify_settings()
    batch = [
        events(user_registered("usr_s", "Sam", "S"), "usr_s"),
        events(user_registered("usr_a", "Ann", "A"), "usr_a"),
        events(
            GroupCreated(
                group_id="grp_1",
                name="G",
                primary_contact_id="usr_a",
                member_ids=("usr_a",),
                created_by="usr_a",
            ),
            "grp_1",
        ),
        events(
            StudyShared(
                bucket_id="bkt_g",
                study_uids=("1.2.3",),
                recipients=(RecipientRef(recipient_id="grp_1", kind="group"),),
                sender_id="usr_s",
                access_level="images_report_read",
                reason="r",
                language="en",
            ),
            "bkt_g",
        ),
    ]
    await apply(mongo_db, batch)
    await drain(Sender(mongo_db, settings))

    app = create_app()
    test_tokens.install(app)
    app.state.db = mongo_db
    desk = test_tokens.user("usr_desk", "service_desk")
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
        cause = str(batch[-1].event_id)
        listed = await client.get(
            "/api/notifications", params={"cause_event_id": cause}, headers=desk
        )
        by_kind = {i["kind"]: i for i in listed.json()["items"]}
        assert by_kind["fanout"]["state"] == "expanded"
        assert by_kind["fanout"]["recipient_id"] == "grp_1"
        assert by_kind["mail"]["parent_id"] == by_kind["fanout"]["id"]
        assert by_kind["mail"]["address"] == "usr_a@example.org"
        mine = await client.get(
            "/api/notifications", params={"recipient_id": "usr_a"}, headers=desk
        )
        assert [i["id"] for i in mine.json()["items"]] == [by_kind["mail"]["id"]]
        one = await client.get(f"/api/notifications/{by_kind['mail']['id']}", headers=desk)
        assert one.status_code == 200 and one.json()["state"] == "sent"
        bad = await client.get("/api/notifications/not-an-id", headers=desk)
        assert bad.status_code == 422
        missing = await client.get(f"/api/notifications/ntf_{'f' * 24}", headers=desk)
        assert missing.status_code == 404


async def test_smtp_credentials_come_from_settings(
    mongo_db, events, notify_settings, start_catcher
):
    """A mail server that requires a login: without the right credentials nothing is
    accepted (and the message is parked with the server's reply); with them it goes."""
    secured = start_catcher("secured", auth="notify:s3cret")
    batch = [
        events(user_registered("usr_s", "Sam", "S"), "usr_s"),
        share_with(events, "bkt_1", "ok@example.org"),
    ]
    await apply(mongo_db, batch)
    wrong = notify_settings(
        smtp_port=secured.port,
        smtp_username="notify",
        smtp_password="wrong",
        delivery_max_attempts=1,
    )
    await drain(Sender(mongo_db, wrong))
    record = await mongo_db.deliveries.find_one()
    assert record["state"] == "parked" and "535" in record["reason"]
    assert secured.messages() == []

    await operations.requeue(
        DeliveryStore(mongo_db), EventStore(mongo_db), record["_id"], Actor(id="usr_desk")
    )
    right = notify_settings(smtp_port=secured.port, smtp_username="notify", smtp_password="s3cret")
    await drain(Sender(mongo_db, right))
    assert [m["To"].addresses[0].addr_spec for m in secured.messages()] == ["ok@example.org"]


async def test_a_hanging_mail_server_cannot_hold_a_message_past_its_lease(
    mongo_db, events, notify_settings, smtp_catcher
):
    """Otherwise a second sender would take the message while the first still talks to it."""
    settings = notify_settings(delivery_lease_s=0.5, delivery_max_attempts=5)
    await apply(
        mongo_db,
        [
            events(user_registered("usr_s", "Sam", "S"), "usr_s"),
            share_with(events, "bkt_1", "ok@example.org"),
        ],
    )
    smtp_catcher.switch("hold-before-accept", True)
    sender = Sender(mongo_db, settings)
    await sender.run_until_idle()

    record = await mongo_db.deliveries.find_one()
    assert record["state"] == "retry"
    assert record["last_error"] == "the attempt took longer than its lease allows"
    smtp_catcher.switch("hold-before-accept", False)
    await drain(sender)
    assert len(smtp_catcher.to("ok@example.org")) == 1


async def test_the_api_starts_from_its_settings_and_is_ready(
    real_infra, mongo_db, monkeypatch, test_tokens
):
    monkeypatch.setenv("STUDYSHARE_MONGO_URL", real_infra.mongo_url)
    monkeypatch.setenv("STUDYSHARE_KAFKA_BOOTSTRAP", real_infra.kafka_bootstrap)
    monkeypatch.setenv("STUDYSHARE_DATABASE", mongo_db.name)
    monkeypatch.setenv("STUDYSHARE_ENVIRONMENT", "test")
    app = create_app()
    async with app.router.lifespan_context(app):
        test_tokens.install(app)
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            desk = test_tokens.user("usr_desk", "service_desk")
            response = await client.get("/api/notifications/parked", headers=desk)
            assert response.status_code == 200 and response.json() == {"items": []}
    assert "due" in await mongo_db.deliveries.index_information()


async def test_an_unreadable_event_does_not_block_the_ones_after_it(
    mongo_db, events, notify_settings, smtp_catcher
):
    from studyshare.contracts.envelope import EventEnvelope

    settings = notify_settings()
    broken = EventEnvelope(
        event_type="UserRegistered",
        aggregate_type="User",
        aggregate_id="usr_broken",
        aggregate_version=1,
        correlation_id="c",
        payload={"user_id": "usr_broken"},
    )
    await apply(
        mongo_db,
        [
            broken,
            events(user_registered("usr_s", "Sam", "S"), "usr_s"),
            events(user_registered("usr_r", "Rik", "R"), "usr_r"),
            share_with(events, "bkt_1", "usr_r"),
        ],
    )
    await drain(Sender(mongo_db, settings))
    assert [m["To"].addresses[0].addr_spec for m in smtp_catcher.messages()] == [
        "usr_r@example.org"
    ]


async def test_concurrent_senders_claim_each_due_message_once_most_overdue_first(mongo_db):
    """Four senders claim at once: every due message is taken by exactly one of them, once;
    one not yet due and one under a live lease are left alone; a lapsed lease goes first."""
    store = DeliveryStore(mongo_db)
    await store.ensure_indexes()
    now, lease = utcnow(), timedelta(seconds=30)
    await mongo_db.deliveries.insert_many(
        [
            *(
                {"_id": f"due{i:02d}", "state": "pending", "due_at": now - timedelta(seconds=i)}
                for i in range(20)
            ),
            {"_id": "retry", "state": "retry", "due_at": now - timedelta(hours=1), "attempts": 2},
            {"_id": "later", "state": "pending", "due_at": now + timedelta(minutes=5)},
            {"_id": "held", "state": "sending", "lease_until": now + lease, "claim": "c1"},
            {"_id": "lapsed", "state": "sending", "lease_until": now, "claim": "c2", "attempts": 1},
        ]
    )
    assert (await store.claim(now, lease))["_id"] == "lapsed"
    assert (await store.claim(now, lease))["_id"] == "retry"

    async def sender() -> list[dict]:
        taken = []
        while (doc := await store.claim(now, lease)) is not None:
            taken.append(doc)
        return taken

    taken = [doc for docs in await asyncio.gather(*(sender() for _ in range(4))) for doc in docs]
    assert sorted(d["_id"] for d in taken) == [f"due{i:02d}" for i in range(20)]
    assert len({d["claim"] for d in taken}) == 20
    records = {d["_id"]: d async for d in mongo_db.deliveries.find()}
    assert all(records[d["_id"]]["claim"] == d["claim"] for d in taken)
    assert {records[f"due{i:02d}"]["attempts"] for i in range(20)} == {1}
    assert (records["retry"]["attempts"], records["lapsed"]["attempts"]) == (3, 2)
    assert records["lapsed"]["claim"] not in ("c2", None)
    assert (records["later"]["state"], records["held"]["claim"]) == ("pending", "c1")
