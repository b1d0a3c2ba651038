"""The Department aggregate: a sending source (radiology department) or a PACS destination,
its sharing / patient-access policy and its admins. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from studyshare.contracts.events.identity import (
    BreakTheGlassPolicy,
    DepartmentAdminAssigned,
    DepartmentAdminRemoved,
    DepartmentCreated,
    DepartmentPolicySet,
    PacsEndpoint,
    ReferenceNumberRule,
)
from studyshare.identity.domain.exceptions import (
    DefaultValidityExceedsMaximum,
    DepartmentNotFound,
    InvalidPolicy,
    NotAMember,
    PacsEndpointRequired,
)
from studyshare.plumbing.domain import Aggregate, applies


@dataclass(frozen=True)
class Policy:
    default_validity_days: int | None = None
    """None: `default_validity_months` calendar months (one when neither is set)."""
    max_validity_days: int | None = None
    unlimited_allowed: bool = True
    reference_number_rule: ReferenceNumberRule = field(default_factory=ReferenceNumberRule)
    payment_required: bool = False
    patient_otp_required: bool = False
    hipaa_confirmation_required: bool = False
    break_the_glass: BreakTheGlassPolicy = "institution"
    default_validity_months: int | None = None
    time_zone: str | None = None
    patient_report_access: str | None = None
    patient_download_allowed: bool | None = None
    reference_number_validity_days: int | None = None
    reference_numbers_on_arrival: bool = False

    @property
    def months(self) -> int | None:
        """The default validity in calendar months (one month, the manuals' default, when the
        department chose neither days nor months); None when it is set in days."""
        if self.default_validity_days is not None:
            return None
        return self.default_validity_months or 1

    def check(self) -> None:
        if self.default_validity_days is not None and self.default_validity_months is not None:
            raise InvalidPolicy("give the default validity in days or in months, not both")
        if self.default_validity_days is not None and self.default_validity_days < 1:
            raise InvalidPolicy("the default validity is at least one day")
        if self.default_validity_months is not None and self.default_validity_months < 1:
            raise InvalidPolicy("the default validity is at least one month")
        if self.time_zone is not None and not known_time_zone(self.time_zone):
            raise InvalidPolicy(f"unknown time zone {self.time_zone!r} (an IANA name)")
        if self.max_validity_days is not None:
            if self.max_validity_days < 1:
                raise InvalidPolicy("the maximum validity is at least one day")
            # a month is at least 28 days: an explicit default beyond that is always too long
            shortest = (
                self.default_validity_days
                if self.default_validity_days is not None
                else 28 * (self.default_validity_months or 0)
            )
            if shortest > self.max_validity_days:
                raise DefaultValidityExceedsMaximum(
                    "the default validity cannot be longer than the maximum validity"
                )
        if (
            self.reference_number_validity_days is not None
            and self.reference_number_validity_days < 1
        ):
            raise InvalidPolicy("a reference number is valid for at least one day")
        if self.reference_number_rule.length < 4:
            raise InvalidPolicy("reference numbers are at least 4 characters long")


class Department(Aggregate):
    aggregate_type = "Department"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.kind = "radiology"
        self.policy = Policy()
        self.admin_ids: list[str] = []

    @applies
    def when_department_created(self, e: DepartmentCreated) -> None:
        self.name, self.kind = e.name, e.kind

    @applies
    def when_department_policy_set(self, e: DepartmentPolicySet) -> None:
        fields = e.model_dump(exclude={"department_id", "set_by", "reference_number_rule"})
        if e.default_validity_months is not None:  # days are then only the rough equivalent
            fields["default_validity_days"] = None
        self.policy = Policy(**fields, reference_number_rule=e.reference_number_rule)

    @applies
    def when_department_admin_assigned(self, e: DepartmentAdminAssigned) -> None:
        if e.user_id not in self.admin_ids:
            self.admin_ids.append(e.user_id)

    @applies
    def when_department_admin_removed(self, e: DepartmentAdminRemoved) -> None:
        if e.user_id in self.admin_ids:
            self.admin_ids.remove(e.user_id)

    def _must_exist(self) -> None:
        if not self.exists:
            raise DepartmentNotFound(f"department {self.id} does not exist")

    @staticmethod
    def create(
        department_id: str,
        *,
        name: str,
        country: str,
        kind: str,
        email: str | None,
        pacs: PacsEndpoint | None,
        rsw: PacsEndpoint | None,
        created_by: str,
        policy: Policy | None = None,
        institution_id: str | None = None,
        language: str | None = None,
    ) -> list:
        if kind == "pacs" and pacs is None:
            raise PacsEndpointRequired("a PACS destination needs its AE title, host and port")
        policy = policy or Policy()
        policy.check()
        return [
            DepartmentCreated(
                department_id=department_id,
                name=name,
                country=country,
                kind=kind,  # type: ignore[arg-type]
                email=email,
                pacs=pacs,
                rsw=rsw,
                created_by=created_by,
                institution_id=institution_id,
                language=language,  # type: ignore[arg-type]
            ),
            _policy_event(department_id, policy, created_by),
        ]

    def set_policy(self, policy: Policy, by: str) -> list:
        self._must_exist()
        policy.check()
        return [_policy_event(self.id, policy, by)]

    def assign_admin(self, user_id: str, by: str) -> list:
        self._must_exist()
        if user_id in self.admin_ids:
            return []
        return [DepartmentAdminAssigned(department_id=self.id, user_id=user_id, assigned_by=by)]

    def remove_admin(self, user_id: str, by: str) -> list:
        self._must_exist()
        if user_id not in self.admin_ids:
            raise NotAMember(f"user {user_id} is not an admin of department {self.id}")
        return [DepartmentAdminRemoved(department_id=self.id, user_id=user_id, removed_by=by)]

    def drop_admin(self, user_id: str, by: str) -> list:
        """`remove_admin`, where the user may not be listed (nothing to drop then)."""
        return self.remove_admin(user_id, by) if user_id in self.admin_ids else []


def known_time_zone(name: str) -> bool:
    """An IANA time zone name this machine knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _policy_event(department_id: str, policy: Policy, by: str) -> DepartmentPolicySet:
    months = policy.months
    return DepartmentPolicySet(
        department_id=department_id,
        default_validity_days=30 * months if months else policy.default_validity_days or 30,
        default_validity_months=months,
        time_zone=policy.time_zone,
        patient_report_access=policy.patient_report_access,  # type: ignore[arg-type]
        patient_download_allowed=policy.patient_download_allowed,
        reference_number_validity_days=policy.reference_number_validity_days,
        reference_numbers_on_arrival=policy.reference_numbers_on_arrival,
        max_validity_days=policy.max_validity_days,
        unlimited_allowed=policy.unlimited_allowed,
        reference_number_rule=policy.reference_number_rule,
        payment_required=policy.payment_required,
        patient_otp_required=policy.patient_otp_required,
        hipaa_confirmation_required=policy.hipaa_confirmation_required,
        break_the_glass=policy.break_the_glass,
        set_by=by,
    )
