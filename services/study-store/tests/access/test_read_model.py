"""The access read model: idempotent fold, rebuild equals live, the API's local overlay."""

from __future__ import annotations

import random
import time

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import PincodeFailed
from studyshare.contracts.events.share import AccessRevoked, BucketLocked, OTPVerified
from studyshare.contracts.events.study import (
    ReferenceNumberIssued,
    ReferenceNumberRevoked,
    ReferenceNumberShape,
    StudyMessageStored,
)
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.projection import ProjectionRunner
from studyshare.study_store.adapters.access_documents import (
    InMemoryAccessDocuments,
    MongoAccessDocuments,
)
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.adapters.projections import AccessDecisions
from studyshare.study_store.adapters.read_models import fold

from .conftest import Events, now, study_received, study_shared

SHAPE = ReferenceNumberShape.of("AB12CD34EF")


def _history():
    ev = Events()
    uid = "1.2.3"
    return [
        ev(study_received(uid), uid),
        ev(study_shared("bkt_1", [uid], [("usr_a", "user"), ("usr_b", "user")]), "bkt_1"),
        ev(
            AccessRevoked(
                bucket_id="bkt_1", scope="recipient", recipient_id="usr_b", revoked_by="usr_s"
            ),
            "bkt_1",
        ),
        ev(BucketLocked(bucket_id="bkt_1", recipient_id="usr_a", failed_attempts=5), "bkt_1"),
        ev(
            OTPVerified(bucket_id="bkt_1", recipient_id="usr_a", otp_id="o", verified_until=now()),
            "bkt_1",
        ),
    ]


def test_fold_is_idempotent_per_aggregate_version():
    history = _history()
    once: dict = {}
    for e in history:
        fold(once, e)
    twice: dict = {}
    for e in history + history:
        fold(twice, e)
    assert once == twice
    bucket = once["bucket:bkt_1"]
    assert bucket["locked"] and bucket["revoked_recipient_ids"] == ["usr_b"]


async def test_rebuild_from_scratch_equals_live_with_redelivered_batches(mongo_db):
    history = _history()
    live = ProjectionRunner(AccessDecisions(), mongo_db)
    # delivered in small batches, with duplicates (relay retry, consumer restart)
    for start in range(0, len(history), 2):
        await live.apply_batch(history[start : start + 3])
    await live.apply_batch(history)
    rebuilt = ProjectionRunner(AccessDecisions(), mongo_db)
    await rebuilt.apply_batch(history, generation=1)

    def clean(docs):
        return {d["_id"]: {k: v for k, v in d.items() if k != "seq"} for d in docs}

    g0 = await mongo_db["access_decisions.g0.docs"].find().to_list(None)
    g1 = await mongo_db["access_decisions.g1.docs"].find().to_list(None)
    assert clean(g0) == clean(g1) and len(g0) == 3
    seqs = [d["seq"] for d in g0]
    assert len(set(seqs)) == len(seqs), "every write has its own sequence number"

    # a model following generation 0 switches to 1 when the pointer moves (replay)
    documents = MongoAccessDocuments(mongo_db)
    model = AccessModel(documents)
    await model.load()
    assert model.generation == 0
    assert "bkt_1" in await model.buckets_of("1.2.3")
    await live.pointer.switch(1)
    await mongo_db["access_decisions.g0.docs"].drop()  # what it holds of 0 is forgotten too
    documents.pointer._cached = None
    await model.refresh()
    assert model.generation == 1 and "bkt_1" in await model.buckets_of("1.2.3")


async def test_local_overlay_survives_an_older_worker_copy(mongo_db):
    """The API revokes a reference number; the worker's copy of the number, written before it
    saw the revocation, must not reopen it."""
    runner = ProjectionRunner(AccessDecisions(), mongo_db)
    issued = envelope_for(
        ReferenceNumberIssued(reference_id="AB12CD34EF", number_shape=SHAPE, study_uid="1.2.3"),
        aggregate_id="ref_AB12CD34EF",
        aggregate_version=1,
        actor=Actor(id="usr_s"),
    )
    revoked = envelope_for(
        ReferenceNumberRevoked(reference_id="AB12CD34EF", study_uid="1.2.3", revoked_by="usr_s"),
        aggregate_id="ref_AB12CD34EF",
        aggregate_version=2,
        actor=Actor(id="usr_s"),
    )
    model = AccessModel(MongoAccessDocuments(mongo_db))
    await model.load()
    model.apply_local([issued, revoked])
    assert (await model.reference("AB12CD34EF"))["revoked"]
    await runner.apply_batch([issued])  # the worker is behind
    await model.refresh()
    assert (await model.reference("AB12CD34EF"))["revoked"], "the older copy does not reopen it"
    assert [r["revoked"] for r in await model.references_of("1.2.3")] == [True]
    await runner.apply_batch([revoked])
    await model.refresh()
    assert (await model.reference("AB12CD34EF"))["revoked"]


def test_fold_order_within_an_aggregate_matters_only_per_aggregate():
    """Events of different aggregates may arrive in any order (different partitions)."""
    history = _history()
    expected: dict = {}
    for e in history:
        fold(expected, e)
    study, rest = history[0], history[1:]
    for _ in range(5):
        docs: dict = {}
        order = [*rest]
        order.insert(random.randrange(len(rest) + 1), study)
        for e in order:
            fold(docs, e)
        assert docs == expected


def test_a_document_following_two_aggregates_is_the_same_in_either_arrival_order():
    """A reference number's document follows its own stream and its patient's (wrong pincodes);
    a rebuild may read the patient's partition first. Found by the kill -9 test: the remembered
    versions came out in arrival order, so live and rebuilt documents differed."""
    ev = Events()
    number = "KX5WKJXC32"
    reference = [
        ev(
            ReferenceNumberIssued(reference_id=number, number_shape=SHAPE, study_uid="1.2.3"),
            f"ref_{number}",
        ),
        ev(
            ReferenceNumberRevoked(reference_id=number, study_uid="1.2.3", revoked_by="usr_s"),
            f"ref_{number}",
        ),
    ]
    patient = [
        ev(
            PincodeFailed(reference_id=number, study_uid="1.2.3", failed_attempts=n),
            f"pat_{number}",
        )
        for n in (1, 2)
    ]
    reference_first: dict = {}
    patient_first: dict = {}
    for e in reference + patient:
        fold(reference_first, e)
    for e in patient + reference:
        fold(patient_first, e)
    assert reference_first == patient_first
    doc = reference_first[f"ref:{number}"]
    assert doc["revoked"] and doc["pincode_failures"] == 2


async def test_certainly_open_studies_are_always_decided_open_and_in_the_clear():
    """The overview skips deciding these; the rules must agree with that shortcut."""
    from studyshare.contracts.events.identity import UserDeactivated
    from studyshare.contracts.tokens import AccessClaims

    ev = Events()
    envelopes = []
    for n in range(30):
        uid = f"1.9.{n}"
        envelopes.append(
            ev(study_received(uid, department_id=f"dep_{n % 3}", owner_id=f"usr_{n % 4}"), uid)
        )
        envelopes.append(
            ev(
                study_shared(
                    f"bkt_{n}",
                    [uid],
                    [(f"usr_{n % 5}", "user")],
                    anonymize=n % 2 == 0,
                    two_factor=n % 3 == 0,
                ),
                f"bkt_{n}",
            )
        )
    envelopes.append(ev(UserDeactivated(user_id="usr_3", deactivated_by="x"), "usr_3"))
    documents = InMemoryAccessDocuments()
    documents.apply(envelopes)  # as the worker writes them
    model = AccessModel(documents)
    model.lease.renew(time.monotonic())  # as a successful read would
    principals = [
        AccessClaims(sub=f"usr_{i}", roles=roles, department_ids=deps, iat=0, exp=2**31)
        for i in range(5)
        for roles, deps in [
            (("physician",), ("dep_0",)),
            (("department_staff",), ("dep_1", "dep_2")),
            (("auditor",), ("dep_0",)),
            (("service_desk",), ()),
        ]
    ]
    checked = 0
    for p in principals:
        for uid in await model.certainly_open(p):
            d = await model.decide(p, uid)
            assert d.images and not d.anonymized, (p.sub, p.roles, uid, d)
            checked += 1
        if p.sub == "usr_3":
            assert await model.certainly_open(p) == set(), "deactivated"
    assert checked > 100


def test_a_malformed_event_is_skipped_not_stalling_later_revocations():
    history = _history()
    broken = history[2].model_copy(update={"payload": {"bucket_id": "bkt_1", "scope": "nope"}})
    docs: dict = {}
    for e in [history[0], history[1], broken, *history[3:]]:
        fold(docs, e)
    assert docs["bucket:bkt_1"]["locked"], "the events after the malformed one still apply"


def test_a_share_message_counts_as_one_more_series_of_the_study():
    """The message is stored with the study as its own series (one text SR): the study's
    details count it, once, however often the event is delivered."""
    ev = Events()
    uid = "1.2.9"
    received = ev(study_received(uid, series_count=1, instance_count=2), uid)
    message = ev(StudyMessageStored(study_uid=uid, bucket_id="bkt_m", series_uid="1.2.9.9"), uid)
    docs: dict = {}
    for e in (received, message, message):
        fold(docs, e)
    study = docs[f"study:{uid}"]
    assert (study["series_count"], study["instance_count"]) == (2, 3)


async def test_an_accepted_invitation_opens_the_e_mail_recipients_grant_to_that_account():
    """The account that accepted an invitation by e-mail holds the e-mail recipient's grant
    (also as a colleague's); revoking the e-mail recipient ends it."""
    from studyshare.contracts.events.share import InvitationAccepted
    from studyshare.contracts.tokens import AccessClaims

    ev = Events()
    uid, invited = "1.7.1", "email:new@example.org"
    model = AccessModel(InMemoryAccessDocuments())
    model.apply_local(
        [
            ev(study_received(uid), uid),
            ev(study_shared("bkt_inv", [uid], [(invited, "email")]), "bkt_inv"),
        ]
    )
    model.lease.renew(time.monotonic())  # as a successful read would
    newcomer = AccessClaims(sub="usr_new", roles=("physician",), iat=0, exp=2**31)
    assert not (await model.decide(newcomer, uid)).images, "an invitation is nobody's till accepted"
    accepted = InvitationAccepted(bucket_id="bkt_inv", recipient_id=invited, user_id="usr_new")
    model.apply_local([ev(accepted, "bkt_inv")])
    decision = await model.decide(newcomer, uid)
    assert decision.images and decision.via == "grant" and decision.bucket_id == "bkt_inv"
    assert uid in await model.candidate_studies(newcomer)
    other = AccessClaims(sub="usr_other", roles=("physician",), iat=0, exp=2**31)
    assert not (await model.decide(other, uid)).images
    revoked = AccessRevoked(
        bucket_id="bkt_inv", scope="recipient", recipient_id=invited, revoked_by="usr_sender"
    )
    model.apply_local([ev(revoked, "bkt_inv")])
    assert (await model.decide(newcomer, uid)).refusal == "revoked"
