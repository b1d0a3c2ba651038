"""Who may read the audit log: auditors, the service desk, and department admins for their
department's studies. Everyone else is refused."""

from __future__ import annotations

from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.errors import Forbidden, NotFound

FULL_READERS = ("auditor", "service_desk")


class AuditLogReadersOnly(Forbidden):
    """Only auditors, department admins and the service desk read the audit log."""


class AdminOfOtherDepartment(Forbidden):
    """A department admin reads the log of their own department's studies only."""


class ChainCheckForOperatorsOnly(Forbidden):
    """The hash chain check is for auditors and the service desk."""


class StudyNotInAuditLog(NotFound):
    """No event ever touched this study."""


def reads_everything(claims: AccessClaims) -> bool:
    return claims.kind == "user" and claims.has_role(*FULL_READERS)


def admin_departments(claims: AccessClaims) -> tuple[str, ...]:
    if claims.kind != "user" or not claims.has_role("department_admin"):
        return ()
    return claims.admin_of


def check_reader(claims: AccessClaims) -> None:
    """Any read of the audit API: a full reader or an admin of some department."""
    if not reads_everything(claims) and not admin_departments(claims):
        raise AuditLogReadersOnly(
            "only auditors, department admins and the service desk can read the audit log"
        )


def check_study_reader(claims: AccessClaims, study_department: str | None) -> None:
    """A study's log: full readers, or an admin of the study's (sending) department."""
    check_reader(claims)
    if reads_everything(claims):
        return
    if study_department is None or study_department not in admin_departments(claims):
        raise AdminOfOtherDepartment(
            "department admins can only read the audit log of their department's studies"
        )


def check_operator(claims: AccessClaims) -> None:
    if not reads_everything(claims):
        raise ChainCheckForOperatorsOnly("the chain check is for auditors and the service desk")
