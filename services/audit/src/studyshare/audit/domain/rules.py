"""Who may read the audit log: auditors, the service desk, and department admins for their
department's studies. The Access tab is also for the people who share the study (the exam
owner, the sending department's staff, a sender: `access_view`), and a patient logged in with
a reference number reads who opened their own study (`check_patient`). Everyone else is
refused."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.errors import Forbidden, NotFound

FULL_READERS = ("auditor", "service_desk")


class AuditLogReadersOnly(Forbidden):
    """Only auditors, department admins and the service desk read the audit log."""


class ChainCheckForOperatorsOnly(Forbidden):
    """The hash chain check is for auditors and the service desk."""


class StudyNotInAuditLog(NotFound):
    """No event about this study reached the log the reader may read. A department admin
    is told so of another department's study too: the log names them no study it holds for
    other departments (known or not, answered alike)."""


def not_in_log(uid: str) -> StudyNotInAuditLog:
    return StudyNotInAuditLog(f"no event about study {uid} has reached the audit log you read")


class NotAmongThoseWhoShare(Forbidden):
    """The Access tab is for the exam owner, the sending department's staff, the senders of
    the study's buckets, department admins, auditors and the service desk; a recipient who did
    not share it (or anyone else) is refused."""


class PatientTokenOnly(Forbidden):
    """ "Who opened my study" is answered to a patient logged in with a reference number."""


#: what the Access tab shows: everything (`full`), every grant of the study (`owner`,
#: `department`), or the buckets the reader sent (`sender`)
AccessView = Literal["full", "owner", "department", "sender"]


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


def check_study_reader(claims: AccessClaims, uid: str, study_department: str | None) -> None:
    """A study's log: full readers, or an admin of the study's (sending) department; to an
    admin of other departments it is as unknown (`StudyNotInAuditLog`)."""
    check_reader(claims)
    if reads_everything(claims):
        return
    if study_department is None or study_department not in admin_departments(claims):
        raise not_in_log(uid)


def check_operator(claims: AccessClaims) -> None:
    if not reads_everything(claims):
        raise ChainCheckForOperatorsOnly("the chain check is for auditors and the service desk")


def access_view(
    claims: AccessClaims,
    uid: str,
    study_department: str | None,
    owner_id: str | None,
    senders: Iterable[str | None],
) -> AccessView:
    """Which Access tab this reader sees of a study: auditors, the service desk and the admins
    of the study's department see everything; the exam owner and the staff of the study's
    (sending) department see every grant of the study; a sender sees the buckets they sent.
    Anyone else (a recipient who did not share it, another department's staff) is refused;
    to another department's admin, a reader of the log, the study is as unknown."""
    if reads_everything(claims) or (
        study_department is not None and study_department in admin_departments(claims)
    ):
        return "full"
    if claims.kind == "user":
        if owner_id is not None and claims.sub == owner_id:
            return "owner"
        if study_department is not None and study_department in claims.department_ids:
            return "department"
        if claims.sub in set(senders):
            return "sender"
    if admin_departments(claims):
        raise not_in_log(uid)
    raise NotAmongThoseWhoShare(
        "the Access tab is for the exam owner, the sending department and the study's senders"
    )


def check_patient(claims: AccessClaims) -> str:
    """A patient token opens exactly one study: the one whose openings it may read."""
    if claims.kind != "patient" or not claims.study_uid:
        raise PatientTokenOnly("only a patient logged in with a reference number reads this")
    return claims.study_uid
