"""Issue 15, point 12 (second half): the pincode never travels in `study.events`; nor does
the reference number it goes with.

Anyone who can read the topic must not learn a patient's pincode, nor anything that lets them
check a guess offline (a hash of it, salted or not): the study store seals the pincode to
identity's own key, and only identity keeps an argon2 hash of it. The patient still logs in
with the pincode, and not with a wrong one.

The reference number opens the study with a date of birth: the topics, and so audit and its
readers, name it by its reference id only (`studyshare.plumbing.reference_ids`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from studyshare.contracts.envelope import EventEnvelope
from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, ok, problem, unique, wait_for
from .identity_reads import identity_reference

BIRTH_DATE = "19810723"
PINCODE = "58302917"  # eight digits: no chance of meeting them by accident in other records
#: a modular-crypt hash of anything (`$argon2id$...`, `$2b$...`, `$6$...`): checkable offline
CRYPT_HASH = re.compile(r"\$[0-9a-z-]{1,16}\$")


@pytest.fixture(scope="module")
def department(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department_id = api.radiology_department(desk, unique("Radiology pincode "))
    admin = api.register(
        desk,
        "Petra",
        roles=["department_admin", "department_staff"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    sender = api.register(admin.headers, "Sam", roles=["physician"], department_ids=[department_id])
    return SimpleNamespace(id=department_id, admin=admin, sender=sender)


async def _records(
    bootstrap: str, topic: str = "study.events"
) -> list[tuple[bytes, EventEnvelope]]:
    """Every record of `topic`, from offset 0 to its end when called: (raw value, envelope)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        seen: list[tuple[bytes, EventEnvelope]] = []
        deadline = time.monotonic() + 60
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batches = await consumer.getmany(*partitions, timeout_ms=500)
            for messages in batches.values():
                seen.extend((m.value, EventEnvelope.from_json_bytes(m.value)) for m in messages)
        return seen
    finally:
        await consumer.stop()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _digests(number: str) -> set[str]:
    """Unsalted digests of the pincode (alone and with the reference number), hex and base64."""
    found = set()
    for text in (PINCODE, f"{number}{PINCODE}", f"{number}:{PINCODE}"):
        for name in hashlib.algorithms_guaranteed:
            digest = hashlib.new(name, text.encode())
            raw = digest.digest(64) if name.startswith("shake") else digest.digest()
            found |= {raw.hex(), base64.b64encode(raw).decode()}
    return found


def test_no_pincode_nor_its_hash_is_readable_in_study_events(
    api: Gateway, platform: LocalPlatform, department: SimpleNamespace
):
    study = api.upload(department.sender, "CT pincode", "Secret^Paula", BIRTH_DATE)
    uid = study.study_uid
    issued = ok(
        api.client.post(
            f"/api/studies/{uid}/reference-numbers", json={}, headers=department.admin.headers
        ),
        201,
    )
    number = issued["reference_number"]
    ok(
        api.client.put(
            f"/api/studies/{uid}/reference-numbers/{issued['reference_id']}/pincode",
            json={"pincode": PINCODE},
            headers=department.admin.headers,
        ),
        204,
    )

    def with_pincode_set() -> list[tuple[bytes, EventEnvelope]] | None:
        records = asyncio.run(_records(platform.kafka_bootstrap))
        mine = [e for _, e in records if e.aggregate_id == f"ref_{issued['reference_id']}"]
        return records if any(e.event_type == "PincodeSet" for e in mine) else None

    records = wait_for(with_pincode_set, "the PincodeSet record on study.events", 60)
    digests = _digests(number)
    for raw, envelope in records:
        assert PINCODE.encode() not in raw, f"the pincode in clear: {envelope.event_type}"
        for text in _strings(envelope.model_dump(mode="json")):
            assert not CRYPT_HASH.search(text), f"a password hash in {envelope.event_type}"
            assert text not in digests, f"a digest of the pincode in {envelope.event_type}"

    birth = f"{BIRTH_DATE[:4]}-{BIRTH_DATE[4:6]}-{BIRTH_DATE[6:]}"

    def login(**extra: str) -> Any:
        body = {"reference_number": number, "date_of_birth": birth, **extra}
        return api.client.post("/api/auth/patient-login", json=body)

    def pincode_asked() -> bool:
        r = login()
        return r.status_code == 401 and r.json().get("rule") == "PincodeRequired"

    wait_for(pincode_asked, "the reference number and its pincode known to identity", 60)
    problem(login(pincode="58302918"), 401, "PatientLoginRefused")
    token = ok(login(pincode=PINCODE))
    assert token["study_uid"] == uid
    patient = {"Authorization": f"Bearer {token['access_token']}"}
    assert ok(api.study(patient, uid))["access"]["via"] == "reference_number"


def test_no_reference_number_travels_in_clear(
    api: Gateway, platform: LocalPlatform, department: SimpleNamespace
):
    """Issued, refused, logged in with, opened with: the number (in either case) is in no record
    of study.events or identity.events, nor is a number a patient mistyped; the records name
    the reference by its id. Before reference ids, every one of them carried the number."""
    uid = api.upload(department.sender, "CT reference", "Secret^Rita", BIRTH_DATE).study_uid
    issued = ok(
        api.client.post(
            f"/api/studies/{uid}/reference-numbers", json={}, headers=department.admin.headers
        ),
        201,
    )
    number, ref_id = issued["reference_number"], issued["reference_id"]
    mistyped = number[::-1] if number[::-1] != number else number + "7"
    birth = f"{BIRTH_DATE[:4]}-{BIRTH_DATE[4:6]}-{BIRTH_DATE[6:]}"

    def login(typed: str) -> Any:
        body = {"reference_number": typed, "date_of_birth": birth}
        return api.client.post("/api/auth/patient-login", json=body)

    problem(login(mistyped), 401, "PatientLoginRefused")
    # a login before identity knows the number would count against it: wait as the login reads
    wait_for(
        lambda: asyncio.run(identity_reference(platform, number)),
        "the reference number known to identity",
        60,
    )
    token = ok(login(number.lower()))
    patient = {"Authorization": f"Bearer {token['access_token']}"}
    assert ok(api.study(patient, uid))["access"]["reference_id"] == ref_id
    ok(api.client.get(f"/dicomweb/studies/{uid}/metadata", headers=patient))

    def all_recorded() -> list[tuple[bytes, EventEnvelope]] | None:
        records = [
            record
            for topic in ("study.events", "identity.events")
            for record in asyncio.run(_records(platform.kafka_bootstrap, topic))
        ]
        named = {
            e.event_type
            for _, e in records
            if e.aggregate_id in (f"ref_{ref_id}", f"pat_{ref_id}")
            or e.payload.get("reference_id") == ref_id
        }
        wanted = {"ReferenceNumberIssued", "PatientLoginSucceeded", "StudyAccessed"}
        return records if wanted <= named else None

    records = all_recorded() or wait_for(all_recorded, "the patient's records on the topics", 90)
    for raw, envelope in records:
        for secret in (number, number.lower(), mistyped, mistyped.lower()):
            assert secret.encode() not in raw, f"a reference number in {envelope.event_type}"
