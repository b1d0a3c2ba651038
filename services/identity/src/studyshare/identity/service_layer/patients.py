"""Patient login: reference number + date of birth, plus the pincode when the department
requires payment, plus an SMS code when the department requires one. The token opens one
study, within the reference number's validity window. Failures are counted per number.

The number typed is a credential: it becomes its reference id (`studyshare.plumbing.
reference_ids`) at once, and only that id is looked up, counted, stored, written and signed."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import PatientOTPIssued
from studyshare.identity.adapters.projections import reference
from studyshare.identity.adapters.read_models import DEPARTMENTS
from studyshare.identity.domain.exceptions import (
    LoginTemporarilyLocked,
    PatientLoginLocked,
    PatientLoginRefused,
    PatientOTPRequired,
    PatientOTPUnavailable,
    PaymentPending,
    PincodeRequired,
    ReferenceNumberBreaksComplexityRule,
    ReferenceNumberOutsideValidity,
    ReferenceNumberWithdrawn,
)
from studyshare.identity.domain.patient import Patient, ReferenceNumberView, patient_id, refusal
from studyshare.identity.service_layer import throttling
from studyshare.identity.service_layer.context import Identity
from studyshare.identity.service_layer.throttling import Gate
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.reference_ids import reference_id
from studyshare.plumbing.sealing import seal

log = get_logger(__name__)


@dataclass(frozen=True)
class PatientToken:
    access_token: str
    expires_in: int
    study_uid: str
    expires_at: datetime
    token_type: str = "Bearer"  # noqa: S105 - the token scheme


REFUSALS = {
    "revoked": (ReferenceNumberWithdrawn, "this reference number was withdrawn"),
    "rule_violation": (
        ReferenceNumberBreaksComplexityRule,
        "this reference number does not meet the department's complexity rule",
    ),
    "outside_validity": (
        ReferenceNumberOutsideValidity,
        "this reference number cannot be used at this time",
    ),
}


async def _policy(app: Identity, department_id: str | None) -> dict[str, Any]:
    if not department_id:
        return {}
    doc = await app.db[DEPARTMENTS].find_one({"_id": department_id}, {"policy": 1})
    return (doc or {}).get("policy") or {}


async def patient_login(
    app: Identity,
    number: str,
    birth_date: date,
    pincode: str | None,
    otp: str | None,
    ip: str | None,
) -> PatientToken:
    """Every guess passes the reference number's counter and the source's first (admitted and
    counted in one atomic step); a number or source that is locked is refused and nothing is
    written. From here on the number is named by its id (`ref_id`): the counter, the Patient
    aggregate and the SMS code are the id's, and a number no reference has is recorded as the
    id of what was typed. The events and the token name the reference found by its own id."""
    now = app.clock()
    ref_id = reference_id(number, app.settings.reference_number_secret)
    pid = patient_id(ref_id)
    actor = Actor(kind="patient", id=pid, ip=ip)
    gates = [Gate(f"patient:{ref_id}", app.patient_lockout, _number_locked)]
    if ip:
        gates.append(Gate(f"patient-ip:{ip}", app.source_lockout, _source_locked))
    attempts = await throttling.admit(app, gates, now)
    ref = await reference(app.db, ref_id, number)

    async def fail(reason: str) -> None:
        until, *_ = await throttling.failed(app, attempts, app.clock())
        study_uid = ref.study_uid if ref else None
        await app.execute(
            Patient,
            pid,
            lambda p: p.fail(
                ref.reference_id if ref else ref_id,
                reason,
                study_uid=study_uid,
                ip=ip,
                failures=attempts[0].failures,
                locked_until=until,
            ),
            actor,
        )
        log.info("patient_login.failed", reason=reason)

    reason = refusal(ref, birth_date, now)
    if reason is not None:
        await fail(reason)
        if reason in REFUSALS:
            cls, detail = REFUSALS[reason]
            raise cls(detail)
        raise PatientLoginRefused()
    assert ref is not None
    policy = await _policy(app, ref.department_id)
    if ref.pincode_required or ref.pincode_hash or policy.get("payment_required"):
        if not ref.pincode_hash:
            await throttling.release(app, attempts)
            raise PaymentPending("access to this study is available after payment")
        if not pincode:
            await throttling.release(app, attempts)
            raise PincodeRequired("enter the pincode you received after payment")
        if not await app.passwords.verify(ref.pincode_hash, pincode.strip()):
            await fail("pincode")
            raise PatientLoginRefused()
    if policy.get("patient_otp_required"):
        if not ref.patient_mobile:
            await throttling.release(app, attempts)
            raise PatientOTPUnavailable(
                "an SMS code is required but no mobile number is known; contact the department"
            )
        if not otp:
            await throttling.release(app, attempts)
            await _issue_otp(app, ref, ref_id, actor, now)
            raise PatientOTPRequired("a code was sent by SMS; log in again with it")
        if not await app.patient_otps.consume(ref_id, otp, now):
            await fail("otp")
            raise PatientLoginRefused("the SMS code is not correct or has expired")
    counted, *source = attempts
    await app.throttle.succeeded(counted)
    await throttling.release(app, source)
    return await _succeed(app, ref, pid, actor, ip, now)


def _number_locked(retry_after_s: int) -> PatientLoginLocked:
    return PatientLoginLocked(
        "Too many failed attempts on this reference number. Try again later.", retry_after_s
    )


def _source_locked(retry_after_s: int) -> LoginTemporarilyLocked:
    return LoginTemporarilyLocked("Too many failed attempts. Try again later.", retry_after_s)


async def _issue_otp(
    app: Identity, ref: ReferenceNumberView, ref_id: str, actor: Actor, now: datetime
) -> None:
    """An SMS code for the number whose id is `ref_id`, kept under that id."""
    gap = timedelta(seconds=app.settings.patient_otp_resend_s)
    if await app.patient_otps.recently_issued(ref_id, now - gap):
        return
    code = f"{secrets.randbelow(10**6):06d}"
    expires_at = now + timedelta(seconds=app.settings.patient_otp_ttl_s)
    await app.patient_otps.put(ref_id, code, expires_at, now)
    assert ref.patient_mobile is not None
    await app.execute(
        Patient,
        patient_id(ref_id),
        lambda p: [
            PatientOTPIssued(
                reference_id=ref.reference_id,
                study_uid=ref.study_uid,
                mobile=ref.patient_mobile or "",
                sealed_code=seal(code, app.settings.otp_seal_public_key),
                expires_at=expires_at,
            )
        ],
        actor,
    )


async def _succeed(
    app: Identity,
    ref: ReferenceNumberView,
    pid: str,
    actor: Actor,
    ip: str | None,
    now: datetime,
) -> PatientToken:
    session_id = new_id("ses")
    await app.sessions.start(session_id, pid, now)  # ended by a logout like a user's
    await app.execute(
        Patient,
        pid,
        lambda p: p.succeed(ref.reference_id, ref.study_uid, session_id, ip),
        actor,
    )
    ttl = app.settings.patient_token_ttl_s
    if ref.valid_to is not None:
        ttl = min(ttl, int((ref.valid_to - now).total_seconds()))
    ttl = max(ttl, 1)
    token = app.signer.sign(
        ttl_s=ttl,
        sub=pid,
        kind="patient",
        roles=[],
        environment=app.settings.environment_code,
        study_uid=ref.study_uid,
        reference_id=ref.reference_id,
        sid=session_id,
    )
    log.info("patient_login.succeeded", study_uid=ref.study_uid)
    return PatientToken(token, ttl, ref.study_uid, now + timedelta(seconds=ttl))
