"""Cost of the study store's access decision (hot path) and of the overview.

The read model in memory (`InMemoryAccessDocuments`, as the worker's fold writes it); the
decisions go through the process's cache (`adapters.access_cache`), cold then warm.
`uv run python bench/access_decisions.py` — prints figures; no infrastructure needed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.contracts.events.study import StudyReceived
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.eventstore import envelope_for
from studyshare.study_store.adapters.access_documents import InMemoryAccessDocuments
from studyshare.study_store.adapters.access_model import AccessModel

STUDIES, BUCKETS = 20_000, 20_000
SETTINGS = SimpleNamespace(anonymization_secret="bench-secret")


def main() -> None:
    asyncio.run(measure())


async def measure() -> None:
    documents = InMemoryAccessDocuments()
    model = AccessModel(documents, lease_s=3600.0)
    model.lease.renew(time.monotonic())
    envelopes = []
    for n in range(STUDIES):
        uid = f"1.2.3.{n}"
        envelopes.append(
            envelope_for(
                StudyReceived(study_uid=uid, department_id=f"dep_{n % 50}"),
                aggregate_id=uid,
                aggregate_version=1,
                actor=Actor(),
            )
        )
    for n in range(BUCKETS):
        envelopes.append(
            envelope_for(
                StudyShared(
                    bucket_id=f"bkt_{n}",
                    study_uids=(f"1.2.3.{n}", f"1.2.3.{(n * 7) % STUDIES}"),
                    recipients=(RecipientRef(recipient_id=f"usr_{n % 2000}", kind="user"),),
                    sender_id="usr_s",
                    access_level="images_report_read",
                    reason="r",
                    language="en",
                    valid_until=datetime.now(UTC) + timedelta(days=30),
                ),
                aggregate_id=f"bkt_{n}",
                aggregate_version=1,
                actor=Actor(),
            )
        )
    started = time.perf_counter()
    documents.apply(envelopes)
    print(f"folded {len(envelopes)} events in {time.perf_counter() - started:.2f}s")
    principal = AccessClaims(sub="usr_7", roles=("physician",), iat=0, exp=2**31)
    uids = [f"1.2.3.{n}" for n in range(0, STUDIES, 7)]
    rounds = 50_000
    for state in ("cold", "warm"):
        started = time.perf_counter()
        allowed = 0
        for i in range(rounds):
            allowed += (await model.decide(principal, uids[i % len(uids)])).images
        per = (time.perf_counter() - started) / rounds
        print(
            f"decide ({state} cache): {per * 1e6:.1f} us per decision "
            f"({1 / per:,.0f}/s, {allowed} allowed)"
        )
    started = time.perf_counter()
    visible = await model.visible_studies(principal)
    print(
        f"visible_studies: {len(visible)} studies in {(time.perf_counter() - started) * 1e3:.1f} ms"
    )

    from studyshare.study_store.entrypoints.studies import list_studies

    staff = AccessClaims(
        sub="usr_staff", roles=("department_staff",), department_ids=("dep_1",), iat=0, exp=2**31
    )
    desk = AccessClaims(sub="usr_desk", roles=("service_desk",), iat=0, exp=2**31)
    for who, claims in (("department staff", staff), ("service desk", desk)):
        started = time.perf_counter()
        page = await list_studies(claims, model, SETTINGS, limit=50)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        print(f"overview for {who}: {page.total} studies, first page in {elapsed_ms:.1f} ms")
        started = time.perf_counter()
        visible = await model.visible_studies(claims)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        count = "every study" if visible.every else len(visible)
        print(f"visible_studies (QIDO) for {who}: {count} in {elapsed_ms:.1f} ms")


if __name__ == "__main__":
    main()
