"""The real worker (`python -m studyshare.identity worker`) and relay as subprocesses against
the real broker: reference numbers from `study.events` reach the patient login, the worker's
timer emits group reminders, and the relay publishes identity events to `identity.events`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events.study import ReferenceNumberIssued, ReferenceNumberShape
from studyshare.identity.adapters.projections import reference
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.kafka import producer
from studyshare.plumbing.reference_ids import reference_id, seal_number
from studyshare.plumbing.testing import unique

from .conftest import FakeClock


@pytest.fixture
def identity_process(service_processes, mongo_db):
    def start(command: str, *extra: str) -> subprocess.Popen:
        env = service_processes.env(
            mongo_db.name,
            f"identity-{mongo_db.name}",
            reminder_interval_s="1",
            bootstrap_user="desk",
            bootstrap_password="desk-password-1",
        )
        return service_processes.module("studyshare.identity", command, env, *extra)

    return start


async def eventually(check, timeout: float = 90.0, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


async def test_the_worker_projects_reference_numbers_and_emits_group_reminders(
    real_infra, api, identity_process
):
    number = unique("R").replace("-", "").upper()
    secret = api.identity.settings.reference_number_secret  # the worker's too (the default)
    ref_id = reference_id(number, secret)
    event = ReferenceNumberIssued(
        reference_id=ref_id,
        sealed_number=seal_number(number, ref_id, secret),
        number_shape=ReferenceNumberShape.of(number),
        study_uid="1.2.3.4.5",
        valid_to=datetime.now(UTC) + timedelta(days=1),
        patient_birth_date=date(1975, 6, 1),
    )
    envelope = envelope_for(
        event, aggregate_id=f"ref_{ref_id}", aggregate_version=1, actor=Actor(id="usr_rx")
    )
    kafka = producer(real_infra.settings())
    await kafka.start()
    try:
        await kafka.send_and_wait(
            "study.events", envelope.to_json_bytes(), key=envelope.aggregate_id.encode()
        )
    finally:
        await kafka.stop()

    # a group whose members last confirmed more than 3 months ago
    desk = await api.desk()
    await api.register(desk, username="primary")
    api.identity.clock = FakeClock(datetime.now(UTC) - timedelta(days=100))
    primary = await api.headers("primary", "a-long-password-1")
    group = await api.client.post("/api/groups", json={"name": "Old Practice"}, headers=primary)
    assert group.status_code == 201
    api.identity.clock = FakeClock(datetime.now(UTC))

    identity_process("worker")

    async def projected():
        return await reference(api.identity.db, ref_id, number)

    assert await eventually(projected), "the worker projected the reference number"
    response = await api.client.post(
        "/api/auth/patient-login", json={"reference_number": number, "date_of_birth": "1975-06-01"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["study_uid"] == "1.2.3.4.5"

    async def reminded():
        return await api.events("GroupMembershipConfirmationDue")

    [reminder] = await eventually(reminded)
    assert reminder.aggregate_id == group.json()["id"]


async def test_the_relay_publishes_identity_events_keyed_by_aggregate(
    real_infra, api, identity_process
):
    user_id = await api.register(await api.desk(), username="relayed")
    identity_process("relay")

    async def all_published():
        return await api.identity.db.events.count_documents({"published": False}) == 0

    assert await eventually(all_published)
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=real_infra.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        consumer.assign(
            [
                TopicPartition("identity.events", p)
                for p in consumer.partitions_for_topic("identity.events")
            ]
        )
        await consumer.seek_to_beginning()
        found: list[tuple[bytes, EventEnvelope]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            e.event_type == "UserRegistered" and e.aggregate_id == user_id for _, e in found
        ):
            for messages in (await consumer.getmany(timeout_ms=300)).values():
                found += [(m.key, EventEnvelope.from_json_bytes(m.value)) for m in messages]
    finally:
        await consumer.stop()
    [(key, registered)] = [
        (k, e) for k, e in found if e.event_type == "UserRegistered" and e.aggregate_id == user_id
    ]
    assert key == user_id.encode()
    assert registered.payload["username"] == "relayed"


async def test_other_services_verify_tokens_of_the_api_process_through_its_jwks_url(
    mongo_db, identity_process
):
    import httpx

    from studyshare.plumbing.auth import JWKSVerifier
    from studyshare.plumbing.infra import free_port

    port = free_port()
    identity_process("api", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def up():
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        assert await eventually(up, timeout=60)
        login = await client.post(
            "/api/auth/login", json={"username": "desk", "password": "desk-password-1"}
        )
        assert login.status_code == 200, login.text
    verifier = JWKSVerifier(f"{base}/.well-known/jwks.json")
    claims = await verifier.verify(login.json()["access_token"])
    assert claims.roles == ("service_desk",) and claims.sub.startswith("usr_")
