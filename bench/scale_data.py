"""Scale bench data, written straight into the study store's database (no HTTP, no events).

The study store's API reads one collection (`access_decisions.g<N>.docs`, generation 0 when
no pointer is set) through its access model's cache (`adapters/access_model.py`); this
writes `size` buckets there, each sharing one study of its own, with the documents' exact
shape taken from the read model's own fold (`adapters/read_models.fold`) of a `StudyReceived`
and a `StudyShared`, then copied per bucket. Probe users hold the first 1, 100 and 10,000
buckets (one more recipient on each); every other bucket goes to one of 1,000 filler
recipients. One instance document (`dicom_instances`) makes the first study's WADO-RS
metadata answerable.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, date, datetime, timedelta

from pymongo import AsyncMongoClient

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.contracts.events.study import StudyReceived
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import ProjectionContext, collection_name
from studyshare.study_store.adapters.instances import INSTANCES
from studyshare.study_store.adapters.projections import AccessDecisions
from studyshare.study_store.adapters.read_models import ACCESS_PROJECTION, Doc, fold, names_of

GRANTS = (1, 100, 10_000)
FILLERS = 1_000
BATCH = 10_000


def probe_user(grants: int) -> str:
    return f"usr_probe_{grants}"


def study_uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.10.1919.{n}"


def _templates() -> tuple[Doc, Doc]:
    """One study document and one bucket document as the read model's fold writes them."""
    docs: dict[str, Doc] = {}
    received = StudyReceived(
        study_uid=study_uid(0),
        department_id="dep_scale",
        patient_id="SCALE-0",
        patient_initials="S.P.",
        description="Scale CT",
        study_date=date(2026, 1, 1),
        modalities=("CT",),
        series_count=1,
        instance_count=1,
    )
    shared = _template_share()
    for n, event in enumerate((received, shared)):
        aggregate = received.study_uid if n == 0 else shared.bucket_id
        fold(docs, envelope_for(event, aggregate_id=aggregate, aggregate_version=1, actor=Actor()))
    return docs[f"study:{study_uid(0)}"], docs["bucket:bkt_0"]


def _recipients(n: int) -> list[dict[str, str]]:
    found = [{"recipient_id": f"usr_filler_{n % FILLERS}", "kind": "user"}]
    found += [{"recipient_id": probe_user(g), "kind": "user"} for g in GRANTS if n < g]
    return found


def documents(start: int, stop: int, study: Doc, bucket: Doc) -> list[Doc]:
    """Study and bucket documents `start` to `stop` (each with its `seq`)."""
    out: list[Doc] = []
    for n in range(start, stop):
        uid = study_uid(n)
        s = copy.copy(study)
        s.update(
            _id=f"study:{uid}",
            study_uid=uid,
            patient_id=f"SCALE-{n}",
            study_date=f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}",
            _v=[[uid, 1]],
            seq=2 * n + 1,
        )
        b = copy.copy(bucket)
        b.update(
            _id=f"bucket:bkt_{n}",
            bucket_id=f"bkt_{n}",
            study_uids=[uid],
            recipients=_recipients(n),
            _v=[[f"bkt_{n}", 1]],
            seq=2 * n + 2,
        )
        b["holder_ids"] = sorted(names_of(b))  # as the fold derives it
        out += (s, b)
    return out


def instance_doc() -> Doc:
    """The first study's one instance, as the index holds it (no pixels: metadata only)."""
    uid = study_uid(0)
    return {
        "_id": f"{uid}.1.1",
        "study_uid": uid,
        "series_uid": f"{uid}.1",
        "instance_number": 1,
        "kind": "image",
        "has_pixels": False,
        "meta": {
            "0020000D": {"vr": "UI", "Value": [uid]},
            "0020000E": {"vr": "UI", "Value": [f"{uid}.1"]},
            "00080018": {"vr": "UI", "Value": [f"{uid}.1.1"]},
            "00080060": {"vr": "CS", "Value": ["CT"]},
        },
        "path": "scale/none.dcm",
    }


async def generate(mongo_url: str, database: str, start: int, stop: int) -> float:
    """Write buckets `start` to `stop` (and their studies) into `database`, emptied first
    when `start` is 0; return the seconds taken."""
    client = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        if start == 0:
            await client.drop_database(database)
        db = client[database]
        docs = db[collection_name(ACCESS_PROJECTION, 0, "docs")]
        study, bucket = _templates()
        started = time.perf_counter()
        if start == 0:  # the indexes the worker makes for a new generation
            await AccessDecisions().setup(ProjectionContext(db, ACCESS_PROJECTION, 0))
        step = BATCH // 2
        for first in range(start, stop, step):
            await docs.insert_many(
                documents(first, min(stop, first + step), study, bucket), ordered=False
            )
        meta = db[collection_name(ACCESS_PROJECTION, 0, "meta")]
        await meta.update_one({"_id": "seq"}, {"$set": {"value": 2 * stop}}, upsert=True)
        if start == 0:
            await db[INSTANCES].insert_one(instance_doc())
        return time.perf_counter() - started
    finally:
        await client.close()


# -- the share service: `GET /api/shared-with-me` -------------------------------------------


def _template_share() -> StudyShared:
    """The bucket every generated bucket is a copy of (ids and recipients replaced)."""
    return StudyShared(
        bucket_id="bkt_0",
        study_uids=(study_uid(0),),
        recipients=(RecipientRef(recipient_id="usr_filler_0", kind="user"),),
        sender_id="usr_scale_sender",
        access_level="images_report_read",
        reason="scale bench",
        language="en",
        valid_until=datetime.now(UTC) + timedelta(days=365),
    )


def _share_template() -> Doc:
    """One bucket as the share service's bucket view renders it (`readmodel.render`)."""
    from studyshare.share.adapters.readmodel import render
    from studyshare.share.domain.model import Bucket

    shared = _template_share()
    envelope = envelope_for(shared, aggregate_id="bkt_0", aggregate_version=1, actor=Actor())
    return render(Bucket.rehydrate("bkt_0", [envelope]))


def share_documents(start: int, stop: int, template: Doc) -> tuple[list[Doc], list[Doc]]:
    """Bucket view documents and the share directory's study documents `start` to `stop`."""
    buckets, studies = [], []
    shared_at = template["shared_at"]
    for n in range(start, stop):
        uid = study_uid(n)
        recipients = _recipients(n)
        b = copy.copy(template)
        b.update(
            _id=f"bkt_{n}",
            study_uids=[uid],
            active_study_uids=[uid],
            recipients=[
                {**r, "email": None, "language": None, "revoked": False, "user_id": None}
                for r in recipients
            ],
            active_recipient_ids=sorted(r["recipient_id"] for r in recipients),
            shared_at=shared_at - timedelta(seconds=n),
        )
        buckets.append(b)
        studies.append(
            {
                "_id": uid,
                "department_id": "dep_scale",
                "description": "Scale CT",
                "patient_initials": "S.P.",
                "study_date": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}",
                "modalities": ["CT"],
            }
        )
    return buckets, studies


async def generate_share(mongo_url: str, database: str, start: int, stop: int) -> float:
    """The share service's side of buckets `start` to `stop` (see `generate`)."""
    from studyshare.share.adapters.projections import DIRECTORY
    from studyshare.share.adapters.readmodel import BUCKETS, BucketReadModel

    client = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        if start == 0:
            await client.drop_database(database)
        db = client[database]
        template = _share_template()
        started = time.perf_counter()
        step = BATCH // 2
        for first in range(start, stop, step):
            buckets, studies = share_documents(first, min(stop, first + step), template)
            await db[BUCKETS].insert_many(buckets, ordered=False)
            await db[collection_name(DIRECTORY, 0, "studies")].insert_many(studies, ordered=False)
        if start == 0:
            await BucketReadModel(db).ensure_indexes()
        return time.perf_counter() - started
    finally:
        await client.close()
