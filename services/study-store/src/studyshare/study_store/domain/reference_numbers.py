"""Patient reference numbers (`ref_<reference id>`): issued per the sending department's
complexity rule, optionally valid from/to, revocable, regenerable, with a pincode set after
payment. A number is named by its reference id (`studyshare.plumbing.reference_ids`); its events
carry it only sealed.

A number that breaks the department's current rule is flagged (`complies_with_rule` false) and
cannot be used to open the study; "regenerate" replaces such numbers by new ones.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

from studyshare.access_policy.reference import complies
from studyshare.contracts.events.identity import ReferenceNumberRule
from studyshare.contracts.events.study import (
    PincodeSet,
    ReferenceNumberIssued,
    ReferenceNumberRevoked,
    ReferenceNumberShape,
)
from studyshare.plumbing.domain import Aggregate, applies
from studyshare.study_store.domain.exceptions import (
    ReferenceNumberAlreadyRevoked,
    ReferenceNumberBreaksComplexityRule,
    ReferenceNumbersManagedByStudyDepartmentOnly,
    ReferenceNumberTaken,
    ReferenceNumberUnknown,
    ReferenceNumberValidityBeyondPolicy,
    ReferenceNumberValidityInverted,
)

# No 0/O, 1/I/L: patients type these numbers from paper.
ALPHABETS = {
    "digits": "0123456789",
    "alphanumeric": "ABCDEFGHJKMNPQRSTUVWXYZ23456789",
}
MANAGER_ROLES = ("department_staff", "department_admin")


def stream_id(reference_id: str) -> str:
    return f"ref_{reference_id}"


def generate(rule: ReferenceNumberRule) -> str:
    """A random number satisfying `rule` (alphanumeric ones hold a letter and a digit)."""
    alphabet = ALPHABETS[rule.alphabet]
    length = max(rule.length, 4)
    while True:
        number = "".join(secrets.choice(alphabet) for _ in range(length))
        if complies(ReferenceNumberShape.of(number), rule):
            return number


def validity_as_allowed(
    now: datetime,
    valid_from: datetime | None,
    valid_to: datetime | None,
    validity_days: int | None,
    *,
    clamp: bool = False,
) -> tuple[datetime | None, datetime | None]:
    """A number's validity "as allowed by the source": with the department's
    `reference_number_validity_days`, 'valid to' defaults to that many days after 'valid from'
    (or the issue) and may not lie later (`clamp`: moved back to it instead, for numbers
    regenerated with an earlier validity). Without it: no date restriction unless one is given."""
    if validity_days is None:
        return valid_from, valid_to
    valid_from, valid_to = _utc(valid_from), _utc(valid_to)  # the database's are naive UTC
    latest = (valid_from or now) + timedelta(days=validity_days)
    if valid_to is None:
        return valid_from, latest
    if valid_to > latest + timedelta(seconds=60):
        if clamp:
            return valid_from, latest
        raise ReferenceNumberValidityBeyondPolicy(
            f"the sending department allows reference numbers for {validity_days} days at most"
            f" (until {latest:%Y-%m-%d})"
        )
    return valid_from, valid_to


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def check_validity(valid_from: datetime | None, valid_to: datetime | None) -> None:
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise ReferenceNumberValidityInverted("'valid to' must come after 'valid from'")


def check_may_manage(
    roles: tuple[str, ...],
    department_ids: tuple[str, ...],
    admin_of: tuple[str, ...],
    study_department_id: str | None,
) -> str:
    """Only staff or admins of the study's department, and the service desk, manage numbers.

    Returns the role acted in."""
    if "service_desk" in roles:
        return "service_desk"
    if study_department_id and (
        study_department_id in admin_of
        or (study_department_id in department_ids and any(r in roles for r in MANAGER_ROLES))
    ):
        return "department_admin" if study_department_id in admin_of else "department_staff"
    raise ReferenceNumbersManagedByStudyDepartmentOnly(
        "only staff of the study's sending department or the service desk manage its "
        "reference numbers"
    )


class ReferenceNumber(Aggregate):
    aggregate_type = "ReferenceNumber"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.reference_id = aggregate_id.removeprefix("ref_")
        self.study_uid: str | None = None
        self.complies_with_rule = True
        self.revoked = False
        self.pincode_set = False

    @applies
    def when_reference_number_issued(self, e: ReferenceNumberIssued) -> None:
        self.study_uid = e.study_uid
        self.complies_with_rule = e.complies_with_rule

    @applies
    def when_reference_number_revoked(self, e: ReferenceNumberRevoked) -> None:
        self.revoked = True

    @applies
    def when_pincode_set(self, e: PincodeSet) -> None:
        self.pincode_set = True

    def issue(
        self,
        *,
        study_uid: str,
        rule: ReferenceNumberRule,
        department_id: str | None,
        issued_by: str,
        number: str,
        sealed_number: str,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        patient_birth_date: date | None = None,
        patient_mobile: str | None = None,
        pincode_required: bool = False,
    ) -> list[ReferenceNumberIssued]:
        if self.exists:
            raise ReferenceNumberTaken("this reference number is taken")
        check_validity(valid_from, valid_to)
        shape = ReferenceNumberShape.of(number)
        return [
            ReferenceNumberIssued(
                reference_id=self.reference_id,
                number_shape=shape,
                sealed_number=sealed_number,
                study_uid=study_uid,
                department_id=department_id,
                valid_from=valid_from,
                valid_to=valid_to,
                complies_with_rule=complies(shape, rule),
                patient_birth_date=patient_birth_date,
                patient_mobile=patient_mobile,
                pincode_required=pincode_required,
                issued_by=issued_by,
            )
        ]

    def _must_be_of(self, study_uid: str) -> None:
        if not self.exists or self.study_uid != study_uid:
            raise ReferenceNumberUnknown("the study has no such reference number")

    def revoke(self, study_uid: str, revoked_by: str) -> list[ReferenceNumberRevoked]:
        self._must_be_of(study_uid)
        if self.revoked:
            raise ReferenceNumberAlreadyRevoked("the reference number is revoked")
        return [
            ReferenceNumberRevoked(
                reference_id=self.reference_id, study_uid=study_uid, revoked_by=revoked_by
            )
        ]

    def set_pincode(self, study_uid: str, sealed_pincode: str, set_by: str) -> list[PincodeSet]:
        """`sealed_pincode`: the pincode sealed to identity (no hash of it is ever kept here)."""
        self._must_be_of(study_uid)
        if self.revoked:
            raise ReferenceNumberAlreadyRevoked("the reference number is revoked")
        if not self.complies_with_rule:
            raise ReferenceNumberBreaksComplexityRule(
                "the reference number breaks the complexity rule and is unusable"
            )
        return [
            PincodeSet(
                reference_id=self.reference_id,
                study_uid=study_uid,
                sealed_pincode=sealed_pincode,
                set_by=set_by,
            )
        ]
