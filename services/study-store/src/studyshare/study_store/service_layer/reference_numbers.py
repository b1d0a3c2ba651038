"""Reference number commands: issue, regenerate, revoke, set the pincode.

Each appends to the number's own stream (`ref_<reference id>`) and folds the event into the
API's access model at once, so a revoked number stops opening the study on the next request.
The number itself goes into the stream only sealed (`studyshare.plumbing.reference_ids`), under
the secret the study store shares with identity.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.aggregate import Events, Repository
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.reference_ids import normalized, open_number, reference_id, seal_number
from studyshare.plumbing.sealing import seal_pincode
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.domain.exceptions import (
    ReferenceNumbersManagedByStudyDepartmentOnly,
    ReferenceNumberTaken,
    StudyNotFound,
)
from studyshare.study_store.domain.reference_numbers import (
    ReferenceNumber,
    check_may_manage,
    check_validity,
    generate,
    stream_id,
    validity_as_allowed,
)
from studyshare.study_store.service_layer.break_glass import hide_from_outsiders

log = get_logger(__name__)


async def _study(model: AccessModel, study_uid: str) -> dict[str, Any]:
    study = await model.study(study_uid)
    if study is None:
        raise StudyNotFound.as_unknown()
    return study


async def manager(model: AccessModel, principal: AccessClaims, study_uid: str) -> Actor:
    """Check the caller manages this study's reference numbers; the actor they act as."""
    study = await _study(model, study_uid)
    try:
        role = check_may_manage(
            tuple(principal.roles),
            tuple(principal.department_ids),
            tuple(principal.admin_of),
            study.get("department_id"),
        )
    except ReferenceNumbersManagedByStudyDepartmentOnly:
        await hide_from_outsiders(model, principal, await model.decide(principal, study_uid))
        raise
    return Actor(kind="user", id=principal.sub, role=role)


def _birth_date(study: dict[str, Any]) -> date | None:
    raw = study.get("patient_birth_date")
    return date.fromisoformat(raw) if raw else None


async def issue(
    store: Events,
    model: AccessModel,
    principal: AccessClaims,
    study_uid: str,
    *,
    secret: str,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    patient_mobile: str | None = None,
    reference_number: str | None = None,
    clamp_validity: bool = False,
) -> str:
    """Issue one number: generated per the department's current rule, or the given one (which
    is flagged when it breaks the rule), valid as the department allows. Returns its id."""
    actor = await manager(model, principal, study_uid)
    check_validity(valid_from, valid_to)
    study = await _study(model, study_uid)
    department_id = study.get("department_id")
    rule = await model.reference_rule(department_id)
    policy = await model.department(department_id)
    valid_from, valid_to = validity_as_allowed(
        datetime.now(UTC),
        valid_from,
        valid_to,
        policy.get("reference_number_validity_days"),
        clamp=clamp_validity,
    )
    repo = Repository(store, ReferenceNumber)
    for _ in range(10):
        number = normalized(reference_number) if reference_number else generate(rule)
        ref_id = reference_id(number, secret)
        try:
            _, envelopes = await repo.execute(
                stream_id(ref_id),
                lambda ref, n=number, i=ref_id: ref.issue(
                    study_uid=study_uid,
                    rule=rule,
                    department_id=department_id,
                    issued_by=principal.sub,
                    number=n,
                    sealed_number=seal_number(n, i, secret),
                    valid_from=valid_from,
                    valid_to=valid_to,
                    patient_birth_date=_birth_date(study),
                    patient_mobile=patient_mobile,
                    pincode_required=bool(policy.get("payment_required")),
                ),
                actor,
            )
        except ReferenceNumberTaken:
            if reference_number is not None:
                raise
            continue
        model.apply_local(envelopes)
        log.info(
            "reference_number.issued",
            study_uid=study_uid,
            complies=envelopes[0].payload["complies_with_rule"],
        )
        return ref_id
    raise ReferenceNumberTaken("could not find a free reference number")


async def revoke(
    store: Events,
    model: AccessModel,
    principal: AccessClaims,
    study_uid: str,
    ref_id: str,
) -> None:
    actor = await manager(model, principal, study_uid)
    _, envelopes = await Repository(store, ReferenceNumber).execute(
        stream_id(ref_id), lambda ref: ref.revoke(study_uid, principal.sub), actor
    )
    model.apply_local(envelopes)


async def regenerate(
    store: Events, model: AccessModel, principal: AccessClaims, study_uid: str, *, secret: str
) -> list[str]:
    """Replace every usable-looking number that breaks the department's current rule by a new
    one with the same validity; issue one when the study is left without a usable number.
    Returns the new numbers' ids."""
    await manager(model, principal, study_uid)
    issued: list[str] = []
    active = [r for r in await model.references_of(study_uid) if not r.get("revoked")]
    for ref in active:
        if await model.reference_complies(ref):
            continue
        ref_id = ref["reference_id"]
        # The mobile stays in the number's own stream (the read model keeps only that one exists).
        first = (await store.load(stream_id(ref_id)) or [None])[0]
        mobile = first.payload.get("patient_mobile") if first is not None else None
        await revoke(store, model, principal, study_uid, ref_id)
        issued.append(
            await issue(
                store,
                model,
                principal,
                study_uid,
                secret=secret,
                valid_from=ref.get("valid_from"),
                valid_to=ref.get("valid_to"),
                patient_mobile=mobile,
                clamp_validity=True,
            )
        )
    usable = [
        r
        for r in await model.references_of(study_uid)
        if not r.get("revoked") and await model.reference_complies(r)
    ]
    if not usable:
        issued.append(await issue(store, model, principal, study_uid, secret=secret))
    return issued


async def set_pincode(
    store: Events,
    model: AccessModel,
    principal: AccessClaims,
    study_uid: str,
    ref_id: str,
    pincode: str,
    identity_public_key: str,
) -> None:
    """The pincode is stored and travels (in `PincodeSet`) only sealed to identity's key."""
    actor = await manager(model, principal, study_uid)
    sealed = seal_pincode(ref_id, pincode, identity_public_key)
    _, envelopes = await Repository(store, ReferenceNumber).execute(
        stream_id(ref_id),
        lambda ref: ref.set_pincode(study_uid, sealed, principal.sub),
        actor,
    )
    model.apply_local(envelopes)


ARRIVAL_ACTOR = Actor(kind="system", id="system:reference-numbers-on-arrival")
#: one document per study a number was issued for on its arrival: the number chosen, sealed, and
#: its id (so a redelivered `StudyReceived` issues that same number, i.e. nothing new)
ON_ARRIVAL = "reference_numbers_on_arrival"


async def issue_on_arrival(
    store: EventStore, department: dict[str, Any], received: Any, now: datetime, secret: str
) -> str | None:
    """Where the study's department says so (`reference_numbers_on_arrival`), one reference
    number per study that arrives: per the department's rule, valid as it allows, with a
    pincode when it asks for payment. Idempotent: the number is chosen once per study. Returns
    its id."""
    if not department.get("reference_numbers_on_arrival"):
        return None
    from pymongo import ReturnDocument

    from studyshare.contracts.events.identity import ReferenceNumberRule

    rule = ReferenceNumberRule.model_validate(department.get("reference_number_rule") or {})
    _, valid_to = validity_as_allowed(
        now, None, None, department.get("reference_number_validity_days")
    )
    markers = store.db[ON_ARRIVAL]
    repo = Repository(store, ReferenceNumber)
    for _ in range(10):
        candidate = generate(rule)
        candidate_id = reference_id(candidate, secret)
        marker = await markers.find_one_and_update(
            {"_id": received.study_uid},
            {
                "$setOnInsert": {
                    "reference_id": candidate_id,
                    "sealed_number": seal_number(candidate, candidate_id, secret),
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if "reference_id" not in marker:  # chosen before numbers were sealed, and issued then
            return None
        ref_id = marker["reference_id"]
        number = open_number(marker["sealed_number"], ref_id, secret)
        if number is None:
            raise ValueError("a reference number on arrival was sealed under another secret")
        try:
            await repo.execute(
                stream_id(ref_id),
                lambda ref, n=number, sealed=marker["sealed_number"]: ref.issue(
                    study_uid=received.study_uid,
                    rule=rule,
                    department_id=received.department_id,
                    issued_by=ARRIVAL_ACTOR.id or "system",
                    number=n,
                    sealed_number=sealed,  # the marker's box: the same number, bound to its id
                    valid_to=valid_to,
                    patient_birth_date=received.patient_birth_date,
                    pincode_required=bool(department.get("payment_required")),
                ),
                ARRIVAL_ACTOR,
            )
        except ReferenceNumberTaken:
            existing = await store.load(stream_id(ref_id))
            if existing and existing[0].payload.get("study_uid") == received.study_uid:
                return ref_id  # issued by an earlier delivery of this arrival
            await markers.delete_one({"_id": received.study_uid, "reference_id": ref_id})
            continue  # another study's number: choose again
        log.info("reference_number.issued_on_arrival", study_uid=received.study_uid)
        return ref_id
    raise ReferenceNumberTaken("could not find a free reference number")
