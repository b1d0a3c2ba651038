"""Patient login: a reference number + date of birth (+ pincode after payment, + SMS code),
counted per number typed in the Patient aggregate `pat_<reference id>` (the id of what was
typed, `studyshare.plumbing.reference_ids`: the number itself is never named). Its events name
the reference by its id, as the study store does (for a number issued before reference ids,
its id is the number it always went by). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from studyshare.contracts.events.identity import (
    PatientLoginFailed,
    PatientLoginSucceeded,
    PincodeFailed,
)
from studyshare.plumbing.domain import Aggregate, applies


@dataclass(frozen=True)
class ReferenceNumberView:
    """What identity knows about a reference number (projected from `study.events`), named by
    its reference id (for a number issued before reference ids: that number, its old id)."""

    reference_id: str
    study_uid: str
    department_id: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    complies_with_rule: bool = True
    patient_birth_date: date | None = None
    patient_mobile: str | None = None
    pincode_required: bool = False
    pincode_hash: str | None = None
    revoked: bool = False


def patient_id(reference_id: str) -> str:
    return f"pat_{reference_id}"


def refusal(ref: ReferenceNumberView | None, birth_date: date, now: datetime) -> str | None:
    """Why the reference number and birth date do not open the study (None: they do).

    The birth date is checked before anything that tells the caller about the number itself.
    """
    if ref is None:
        return "unknown"
    if ref.patient_birth_date is None or ref.patient_birth_date != birth_date:
        return "birth_date"
    if ref.revoked:
        return "revoked"
    if not ref.complies_with_rule:
        return "rule_violation"
    if (ref.valid_from and now < ref.valid_from) or (ref.valid_to and now >= ref.valid_to):
        return "outside_validity"
    return None


class Patient(Aggregate):
    aggregate_type = "Patient"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.failed_attempts = 0
        self.pincode_failures = 0
        self.locked_until: datetime | None = None

    @applies
    def when_patient_login_failed(self, e: PatientLoginFailed) -> None:
        self.failed_attempts = e.failed_attempts
        self.locked_until = e.locked_until

    @applies
    def when_pincode_failed(self, e: PincodeFailed) -> None:
        self.pincode_failures = e.failed_attempts

    @applies
    def when_patient_login_succeeded(self, e: PatientLoginSucceeded) -> None:
        self.failed_attempts = 0
        self.locked_until = None

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def fail(
        self,
        reference_id: str,
        reason: str,
        *,
        study_uid: str | None,
        ip: str | None,
        failures: int,
        locked_until: datetime | None,
    ) -> list:
        """A wrong guess on the reference `reference_id` (or on the id of a number typed that
        names none), the `failures`-th in a row as the number's failure counter admitted it
        (a guess refused while the number is locked is never evaluated, and records nothing);
        `locked_until` when it locked the number."""
        events: list = [
            PatientLoginFailed(
                reference_id=reference_id,
                study_uid=study_uid,
                reason=reason,  # type: ignore[arg-type]
                failed_attempts=failures,
                source_ip=ip,
                locked_until=locked_until,
            )
        ]
        if reason == "pincode" and study_uid is not None:
            events.append(
                PincodeFailed(
                    reference_id=reference_id,
                    study_uid=study_uid,
                    failed_attempts=self.pincode_failures + 1,
                )
            )
        return events

    def succeed(self, reference_id: str, study_uid: str, session_id: str, ip: str | None):
        return [
            PatientLoginSucceeded(
                reference_id=reference_id,
                study_uid=study_uid,
                session_id=session_id,
                source_ip=ip,
            )
        ]
