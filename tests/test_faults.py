"""Fault tests (issue 9, point 4): kill -9 each service during a stream of shares.

For each service in turn, concurrent senders share a study through the gateway while the
test SIGKILLs *every* process of that service at once (api, relay, worker) and starts them
again. Killing them together is the most telling choice: the api dies with requests in
flight (an event may be stored without an answer), the relay between publishing and moving
its checkpoint (events are sent again), and the worker between storing a batch and committing
its offsets (events are applied again), all in the same instant.

Afterwards, with the event store as the truth:
- every acknowledged (2xx) share is stored, visible to each recipient, in the study logging
  and produced exactly one mail per recipient (matched by a token unique to the share). One
  window no sender can close: SMTP accepted a mail and the SIGKILL came before notify recorded
  its acceptance (a single write right after the server's reply, `handed_over`). Notify then
  sends it again (at-least-once, `notify.service_layer.sender`) with the same `Message-ID`,
  which receiving mail systems use to drop the copy. So the test allows a second copy only
  with the same `Message-ID` and only of a message notify was sending, not yet handed over,
  at the instant of the kill; any other second mail fails it. The notify kill is aimed at
  that window (it comes while a message is being sent);
- an unacknowledged share is either complete in the same way (stored, only its answer was
  lost) or leaves nothing visible: no list entry, no audit entry, no mail;
- every read model (a projection with its own collections; reactions are checked through
  their effects above) equals a rebuild from offset 0 of the same topics: the reference a
  fault-free consumer builds from the very events the faulty run published. A second
  fault-free run would share differently timed events and ids, so it could never be compared
  document by document; the rebuild can. The rebuild's checkpoints in turn equal the last
  version of every aggregate in the event stores, so no event was lost on its way to Kafka.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related
from studyshare.devstack.platform import LocalPlatform, port_in_use
from studyshare.plumbing.projection import CHECKPOINTS
from studyshare.plumbing.snapshot import differences, live_state, rebuilt_state
from studyshare.study_store.service_layer.access_log import TALLIES

FAULTED = ("notify", "identity", "share", "study-store", "audit")
SENDERS = 4
RECIPIENTS = 2
BEFORE_KILL = 8  # share attempts of a phase before the kill
AFTER_READY = 6  # acknowledged shares after the service is back
UNTIL_READY = 30  # share attempts at most between the kill and the service's return
DOWN_S = 1.5  # how long the service stays dead
PASSWORD = "Fault-Test-2026!"


IN_FLIGHT = "in flight"


@dataclass
class Attempt:
    token: str
    service: str
    status: int | str
    bucket_id: str | None = None

    @property
    def acknowledged(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300


@dataclass
class Stream:
    """Every share attempt, with its token and outcome."""

    attempts: list[Attempt] = field(default_factory=list)

    def acknowledged(self) -> list[Attempt]:
        return [a for a in self.attempts if a.acknowledged]


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.5
) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except (httpx.HTTPError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")


async def call(client: httpx.AsyncClient, method: str, path: str, token: str | None, **kw):
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await client.request(method, path, headers=headers, **kw)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
    return response


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    async def attempt() -> str | None:
        body = {"username": username, "password": password}
        response = await client.post("/api/auth/login", json=body)
        return response.json()["access_token"] if response.status_code == 200 else None

    return await eventually(attempt, 60, f"login of {username}")


Cause = tuple[str, str]


@dataclass
class Cast:
    desk: str
    senders: list[str]
    recipient_ids: list[str]
    recipient_tokens: list[str]
    emails: list[str]
    study_uid: str


async def create_user(client, desk, username, roles, department_id, email) -> str:
    body: dict[str, Any] = {
        "username": username,
        "password": PASSWORD,
        "first_name": "Fault",
        "last_name": username.split(".")[-1].title(),
        "email": email,
        "mobile": "+32470000042",
        "roles": roles,
        "language": "en",
    }
    if department_id:
        body["department_ids"] = [department_id]
        if "department_admin" in roles:
            body["admin_of"] = [department_id]
    return (await call(client, "POST", "/api/users", desk, json=body)).json()["user_id"]


async def onboard(client: httpx.AsyncClient, platform: LocalPlatform, run: str) -> Cast:
    """A department, its admin and senders, two physicians, one uploaded study with a
    patient reference number."""
    desk = await login(client, platform.bootstrap_user, platform.bootstrap_password)
    department = {"name": f"Radiology faults {run}", "country": "be", "kind": "radiology"}
    dep = (await call(client, "POST", "/api/departments", desk, json=department)).json()
    dep_id = dep["department_id"]
    domain = "faults.studyshare.local"
    admin = f"fault.{run}.admin"
    await create_user(
        client, desk, admin, ["department_admin", "department_staff"], dep_id, f"{admin}@{domain}"
    )
    senders = [f"fault.{run}.sender{i}" for i in range(SENDERS)]
    for name in senders:
        await create_user(client, desk, name, ["department_staff"], dep_id, f"{name}@{domain}")
    emails = [f"fault.{run}.physician{i}@{domain}" for i in range(RECIPIENTS)]
    recipient_ids = [
        await create_user(client, desk, email.split("@")[0], ["physician"], None, email)
        for email in emails
    ]
    study = DemoStudy(
        f"faults-{run}", f"FLT-{run}", "Fault^Test", "19700101", "F", "Fault CT", "OT",
        "20260101", f"ACC-{run}",
    )  # fmt: skip
    body, content_type = multipart_related([instance(study, 1, 1)])
    admin_token = await login(client, admin)

    async def upload():
        headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
        return await call(
            client, "POST", "/dicomweb/studies", admin_token, content=body, headers=headers
        )

    await eventually(upload, 60, "the study upload")

    async def reference_number():  # so identity's read model holds something too
        path = f"/api/studies/{study.study_uid}/reference-numbers"
        return await call(client, "POST", path, admin_token, json={})

    await eventually(reference_number, 60, "a patient reference number")
    return Cast(
        desk=desk,
        senders=[await login(client, s) for s in senders],
        recipient_ids=recipient_ids,
        recipient_tokens=[await login(client, e.split("@")[0]) for e in emails],
        emails=emails,
        study_uid=study.study_uid,
    )


def share_body(cast: Cast, token: str) -> dict[str, Any]:
    return {
        "study_uids": [cast.study_uid],
        "recipients": [{"kind": "user", "id": r} for r in cast.recipient_ids],
        "access_level": "images_report_read",
        "reason": "fault test",
        "patient_agreed": True,
        "two_factor": False,
        "send_mail": True,
        "message": f"fault-token {token}",
    }


async def share_once(client, cast: Cast, sender: str, service: str, stream: Stream) -> Attempt:
    attempt = Attempt(token=uuid.uuid4().hex, service=service, status=IN_FLIGHT)
    stream.attempts.append(attempt)
    try:
        response = await client.post(
            "/api/shares",
            json=share_body(cast, attempt.token),
            headers={"Authorization": f"Bearer {sender}"},
        )
    except httpx.HTTPError as exc:
        attempt.status = type(exc).__name__
        return attempt
    attempt.status = response.status_code
    if attempt.acknowledged:
        attempt.bucket_id = response.json()["bucket_id"]
    return attempt


async def service_ready(client: httpx.AsyncClient, platform: LocalPlatform, name: str) -> bool:
    """The api answers `/readyz`, the worker listens on its health port, the relay runs."""
    for process_name, process in platform.processes.items():
        if not process_name.startswith(f"{name}-"):
            continue
        assert process.alive(), f"{process_name} exited: {process.log_tail()}"
        if process_name.endswith("-worker") and not port_in_use(process.port):
            return False
    try:
        response = await client.get(f"{platform.api_url(name)}/readyz", timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


Busy = Callable[[], Awaitable[bool]]


async def phase(
    client: httpx.AsyncClient,
    platform: LocalPlatform,
    cast: Cast,
    name: str,
    stream: Stream,
    busy: Busy | None = None,
    after_kill: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Concurrent senders share while every process of service `name` is killed and restarted.

    The kill comes once the stream is going, at a moment when a share request is in flight
    and, if given, `busy()` says the service is in the middle of its own work."""
    processes = [p for p in platform.processes if p.startswith(f"{name}-")]
    assert processes, f"no processes of {name}: {sorted(platform.processes)}"
    first = len(stream.attempts)
    killed_at: list[int] = []  # number of attempts when the service was killed
    ready_at: list[int] = []  # number of attempts when the service was back
    stop = asyncio.Event()

    async def sender(token: str) -> None:
        while not stop.is_set():
            if killed_at and not ready_at and len(stream.attempts) - killed_at[0] >= UNTIL_READY:
                await asyncio.sleep(0.5)  # enough shares in flight while it restarts
                continue
            await share_once(client, cast, token, name, stream)
            await asyncio.sleep(random.uniform(1.0, 2.5))

    async def acknowledged_since_ready() -> bool:
        after = stream.attempts[ready_at[0] :] if ready_at else []
        return sum(a.acknowledged for a in after) >= AFTER_READY

    senders = [asyncio.create_task(sender(t)) for t in cast.senders]
    try:

        async def streaming() -> bool:
            return len(stream.attempts) - first >= BEFORE_KILL

        async def mid_request() -> bool:
            in_flight = any(a.status == IN_FLIGHT for a in stream.attempts[first:])
            return in_flight and (busy is None or await busy())

        await eventually(streaming, 60, f"shares before killing {name}")
        await eventually(mid_request, 120, f"{name} at work", interval=0.01)
        platform.kill_together(processes)
        killed_at.append(len(stream.attempts))
        if after_kill is not None:
            await after_kill()
        await asyncio.sleep(DOWN_S)
        for process in processes:
            platform.restart(process, wait=False)
        await eventually(lambda: service_ready(client, platform, name), 180, f"{name} back")
        ready_at.append(len(stream.attempts))
        await eventually(acknowledged_since_ready, 120, f"shares acknowledged after {name}")
    finally:
        stop.set()
        await asyncio.gather(*senders)


# -- where a share shows ----------------------------------------------------------------------


async def shared_with(client: httpx.AsyncClient, token: str, study_uid: str) -> set[str]:
    buckets: set[str] = set()
    offset = 0
    while True:
        page = (
            await call(
                client,
                "GET",
                "/api/shared-with-me",
                token,
                params={"study_uid": study_uid, "limit": 200, "offset": offset},
            )
        ).json()
        buckets |= {item["bucket_id"] for item in page["items"]}
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return buckets


async def audited(client: httpx.AsyncClient, cast: Cast) -> list[str]:
    """Bucket ids of every `StudyShared` entry in the study logging (with duplicates)."""
    found: list[str] = []
    offset = 0
    while True:
        page = (
            await call(
                client,
                "GET",
                f"/api/audit/studies/{cast.study_uid}/log",
                cast.desk,
                params={"event_type": "StudyShared", "limit": 500, "offset": offset},
            )
        ).json()
        found += [item["aggregate_id"] for item in page["items"]]
        if page["next_offset"] is None:
            return found
        offset = page["next_offset"]


async def mail_tokens(client: httpx.AsyncClient, email: str) -> list[tuple[str, str]]:
    """(share token, Message-ID) of every mail caught for `email` (with duplicates)."""
    mails = (await call(client, "GET", "/dev/mail", None, params={"to": email})).json()
    tokens = []
    for mail in mails:
        for line in (mail.get("text") or "").splitlines():
            if line.startswith("fault-token "):
                tokens.append((line.split()[1], mail["message_id"]))
    return tokens


@dataclass
class Seen:
    lists: list[set[str]]
    audit: list[str]
    mails: list[list[tuple[str, str]]]


async def everything_seen(client: httpx.AsyncClient, cast: Cast) -> Seen:
    return Seen(
        lists=[await shared_with(client, t, cast.study_uid) for t in cast.recipient_tokens],
        audit=await audited(client, cast),
        mails=[await mail_tokens(client, e) for e in cast.emails],
    )


def missing(seen: Seen, stored: dict[str, str]) -> list[str]:
    """What the stored shares (token -> bucket id) still lack."""
    gaps = []
    for token, bucket in stored.items():
        for i, listed in enumerate(seen.lists):
            if bucket not in listed:
                gaps.append(f"{bucket} not in recipient {i}'s list")
        if bucket not in seen.audit:
            gaps.append(f"{bucket} not in the study logging")
        for i, mails in enumerate(seen.mails):
            if token not in {t for t, _ in mails}:
                gaps.append(f"{bucket}: no mail to recipient {i}")
    return gaps


async def stored_shares(db, tokens: set[str]) -> dict[str, str]:
    """token -> bucket id of every share the event store holds (the truth)."""
    found: dict[str, str] = {}
    async for doc in db["events"].find({"event_type": "StudyShared"}):
        message = (doc.get("payload") or {}).get("message") or ""
        token = message.removeprefix("fault-token ")
        if token in tokens:
            assert token not in found, f"share {token} stored twice"
            found[token] = doc["aggregate_id"]
    return found


async def sending(db, recipient_ids: list[str]) -> bool:
    """Notify holds a claim on a message to one of these recipients (it is being sent)."""
    query = {"recipient_id": {"$in": recipient_ids}, "state": "sending"}
    return await db["deliveries"].count_documents(query) > 0


async def cut_off(db, recipient_ids: list[str]) -> tuple[set[Cause], set[Cause]]:
    """Called right after notify was killed: the share mails it held a claim on, as (bucket id,
    recipient id), split into those whose acceptance by the server was not noted yet (the
    window where a copy may follow) and those already handed over (never sent again)."""
    query = {"recipient_id": {"$in": recipient_ids}, "state": "sending"}
    open_, handed = set(), set()
    async for d in db["deliveries"].find(query):
        cause = (d["context"]["bucket_id"], d["recipient_id"])
        (handed if d.get("handed_over") else open_).add(cause)
    return open_, handed


async def deliveries_settled(db, recipient_ids: list[str]) -> bool:
    """Notify has nothing for these recipients queued, in flight or waiting for a retry."""
    busy = {
        "recipient_id": {"$in": recipient_ids},
        "state": {"$in": ["pending", "sending", "retry"]},
    }
    return await db["deliveries"].count_documents(busy) == 0


# -- projections ------------------------------------------------------------------------------


def read_models(platform: LocalPlatform, name: str) -> tuple[str, list]:
    """A service's database name and its read models: the projections that keep their state
    in their generation's collections. Reactions (queueing mail, re-rendering buckets,
    forwarding to a PACS) declare none; their effects are checked above."""
    service = SERVICE_BY_NAME[name]
    cli = importlib.import_module(f"studyshare.{service.package}.__main__").cli
    with pytest.MonkeyPatch.context() as env:
        for key, value in platform.service_env(service).items():
            env.setenv(key, value)
        settings = cli.settings()
    return settings.database_name, [p for p in cli.projections(settings) if p.collections]


async def stream_heads(mongo: AsyncMongoClient, platform: LocalPlatform, topics) -> dict:
    """The last version of every aggregate stored on `topics`, over every service's event
    store: what a projection of those topics must have applied (its checkpoints)."""
    heads: dict[str, dict[str, Any]] = {}
    for service in platform.chosen:
        events = mongo[f"{platform.database_prefix}{service.package}"]["events"]
        query = {"topic": {"$in": list(topics)}}
        async for doc in events.find(query, {"aggregate_id": 1, "aggregate_version": 1}):
            key, version = doc["aggregate_id"], doc["aggregate_version"]
            if version > heads.get(key, {"v": 0})["v"]:
                heads[key] = {"_id": key, "v": version}
    return heads


async def projection_differences(
    mongo: AsyncMongoClient, platform: LocalPlatform
) -> tuple[dict[str, list[str]], list[str]]:
    """Differences of every read model from its rebuild and of the rebuild's checkpoints from
    the event stores (an event lost between outbox and broker would be missing from both
    the live model and the rebuild); and the read models compared."""
    found, compared = {}, []
    for name in FAULTED:
        database, projections = read_models(platform, name)
        db = mongo[database]
        for projection in projections:
            label = f"{name}.{projection.name}"

            async def caught_up(db=db, projection=projection) -> bool:
                """The live model applied the last stored event of every aggregate (events
                of reactions, such as the study-store's share messages, come late)."""
                heads = await stream_heads(mongo, platform, projection.topics)
                checkpoints = (await live_state(db, projection)).get(CHECKPOINTS, {})
                return all(checkpoints.get(k, {}).get("v", 0) >= h["v"] for k, h in heads.items())

            await eventually(caught_up, 180, f"{label} to apply every stored event")
            live = await live_state(db, projection)
            rebuilt = await rebuilt_state(db, projection, platform.kafka_bootstrap, idle_s=3.0)
            assert any(live.get(c) for c in projection.collections), f"{label} is empty"
            compared.append(label)
            stored = {CHECKPOINTS: await stream_heads(mongo, platform, projection.topics)}
            diff = differences(live, rebuilt) + differences(
                {CHECKPOINTS: rebuilt.get(CHECKPOINTS, {})}, stored
            )
            if diff:
                found[label] = diff
    return found, compared


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.timeout(900)
async def test_kill_9_of_each_service_loses_no_share_sends_no_mail_twice_and_converges(
    platform: LocalPlatform,
):
    run = uuid.uuid4().hex[:8]
    stream = Stream()
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
    mongo: AsyncMongoClient = AsyncMongoClient(platform.mongo_url)
    share_db = mongo[f"{platform.database_prefix}share"]
    notify_db = mongo[f"{platform.database_prefix}notify"]
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, timeout=30, limits=limits, trust_env=False
    ) as client:
        cast = await onboard(client, platform, run)

        async def first_share() -> bool:
            attempt = await share_once(client, cast, cast.senders[0], "none", stream)
            return attempt.acknowledged

        # the share service accepts once it knows the study and the recipients
        await eventually(first_share, 90, "a first share")
        started = time.monotonic()

        async def notify_sending() -> bool:
            return await sending(notify_db, cast.recipient_ids)

        cut: set[Cause] = set()
        handed: set[Cause] = set()

        async def note_cut_off() -> None:
            open_, done = await cut_off(notify_db, cast.recipient_ids)
            cut.update(open_)
            handed.update(done)

        for name in FAULTED:
            if name == "notify":
                await phase(client, platform, cast, name, stream, notify_sending, note_cut_off)
            else:
                await phase(client, platform, cast, name, stream)
        print(f"phases: {time.monotonic() - started:.0f}s")

        tokens = {a.token for a in stream.attempts}
        stored = await stored_shares(share_db, tokens)
        acknowledged = stream.acknowledged()
        lost = [a for a in acknowledged if a.token not in stored]
        assert not lost, f"acknowledged shares not stored: {lost}"
        assert all(stored[a.token] == a.bucket_id for a in acknowledged)
        for service in FAULTED:
            count = sum(a.acknowledged for a in acknowledged if a.service == service)
            assert count >= AFTER_READY, f"only {count} shares acknowledged around {service}"

        async def complete() -> Seen | None:
            seen = await everything_seen(client, cast)
            return None if missing(seen, stored) else seen

        try:
            await eventually(complete, 180, "every stored share everywhere")
        except AssertionError:
            gaps = missing(await everything_seen(client, cast), stored)
            pytest.fail(f"{len(gaps)} gaps, e.g. {gaps[:10]}")
        await eventually(
            lambda: deliveries_settled(notify_db, cast.recipient_ids), 120, "notify to settle"
        )
        seen = await everything_seen(client, cast)

        answerless = [a for a in stream.attempts if not a.acknowledged and a.token in stored]
        resent = []
        for i, mails in enumerate(seen.mails):
            message_ids: dict[str, list[str]] = {}
            for token, message_id in mails:
                message_ids.setdefault(token, []).append(message_id)
            assert set(message_ids) == set(stored), f"recipient {i}: mails != stored shares"
            for token, ids in message_ids.items():
                assert len(set(ids)) == 1, f"recipient {i} got two messages for share {token}"
                if len(ids) > 1:
                    # the one window no sender can close: SMTP accepted the message, then the
                    # SIGKILL came before notify recorded it; the copy has the same Message-ID
                    cause = (stored[token], cast.recipient_ids[i])
                    assert cause in cut, f"recipient {i} got share {token} twice: {ids}"
                    resent.append(cause)
        assert sorted(seen.audit) == sorted(stored.values()), "one StudyShared entry per share"
        for listed in seen.lists:
            # the first share of the test is in the list too, stored like every other one
            assert listed == set(stored.values())

        # the reads above are in the study logging: their tallies become events when their
        # minute closes; the streams stand still once the study store has flushed them all
        study_db = mongo[read_models(platform, "study-store")[0]]

        async def accesses_flushed() -> bool:
            return await study_db[TALLIES].count_documents({}) == 0

        await eventually(accesses_flushed, 150, "the study logging to be flushed")
        diff, compared = await projection_differences(mongo, platform)
        assert not diff, f"projections differ from a rebuild from offset 0: {diff}"
        assert {c.split(".")[0] for c in compared} == set(FAULTED), compared
        print(f"read models equal to their rebuild: {compared}")
    await mongo.close()
    print(
        f"{len(stream.attempts)} attempts, {len(acknowledged)} acknowledged, "
        f"{len(stored)} stored ({len(answerless)} without an answer), "
        f"{sum(len(m) for m in seen.mails)} mails; the notify kill cut off {len(cut)} mails "
        f"before and {len(handed)} after the server's acceptance was noted: "
        f"{len(resent)} copies"
    )
    for service in FAULTED:
        outcomes = Counter(str(a.status) for a in stream.attempts if a.service == service)
        print(f"  {service}: {dict(outcomes)}")
