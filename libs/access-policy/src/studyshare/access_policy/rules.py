"""The access rules: who may see a study, its report, download it, and why. Pure functions.

The one copy of the rules: the study store decides each request with them (its access model
gathers the facts), and audit answers "who could open this study at T" with them (it folds
the facts from the study logging). Inputs are plain facts; the output is one `AccessDecision`
(`decide`) or every path that opens the study (`paths`). Paths to a study, from the manuals:

- department: a member of the study's sending department (token `department_ids`);
- owner: the study's owner (`StudyReceived.owner_id`);
- grant: a bucket shared with the user, or with a department the user belongs to;
- group: a bucket shared with one of the user's groups, or with / owned by a group colleague
  (group practices see each other's studies);
- break_the_glass: an unlock with a reason, for a limited time, while the study department's
  policy lets the caller (`domain.break_glass`) and never over a bucket the caller was in that
  was revoked, expired or locked;
- service_desk: sees every study (each access is audited like any other);
- reference_number: a patient token opens exactly the study of its reference number (both
  name it by its id, `studyshare.plumbing.reference_ids`).

A grant counts only while it is current: the bucket and the recipient are not revoked, the
study is still in the bucket, `valid_until` has not passed, the bucket is not locked, the
parent bucket (re-share) still holds, and on a two-factor bucket the user verified an OTP that
is still valid, in the login session of this token (`Subject.session_id`, the token's `sid`).
Anonymized grants never give the report; images-only grants neither. Several
paths combine to the most permissive non-anonymized one (report and download merged over the
non-anonymized paths); only when every path is anonymized is the decision anonymized.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from studyshare.access_policy.decision import AccessDecision, ReportAccess

REPORT_RANK: dict[str, int] = {"none": 0, "read": 1, "write": 2}
REPORT_BY_LEVEL: dict[str, ReportAccess] = {
    "images": "none",
    "images_report_read": "read",
    "images_report_write": "write",
}
PATH_PRIORITY = {
    "owner": 7,
    "department": 6,
    "grant": 5,
    "group": 4,
    "reference_number": 3,
    "break_the_glass": 2,
    "service_desk": 1,
}
STUDY_ROLES = frozenset({"physician", "department_staff", "department_admin"})

Refusal = Literal[
    "unknown_study",
    "not_your_study",
    "no_grant",
    "revoked",
    "expired",
    "locked",
    "two_factor_required",
    "reference_number_unknown",
    "reference_number_revoked",
    "reference_number_breaks_rule",
    "reference_number_not_yet_valid",
    "reference_number_expired",
    "deactivated",
    "stale",
]
#: the reason of `unknown_study`; also what a caller told nothing about a study's existence reads
NO_SUCH_STUDY = "no such study"
# A broken glass never opens over a bucket the caller was in that ended or holds them back.
GLASS_STOPPERS = frozenset({"revoked", "expired", "locked", "two_factor_required"})
# The more telling refusal wins when several grants fail for different reasons.
_REFUSAL_RANK = {"two_factor_required": 4, "locked": 3, "expired": 2, "revoked": 1}


@dataclass(frozen=True)
class Recipient:
    recipient_id: str
    kind: str
    user_id: str | None = None
    """An e-mail recipient: the account that accepted the invitation (it holds the grant)."""

    @property
    def holder(self) -> str:
        """The user id a user or e-mail recipient stands for."""
        return self.user_id or self.recipient_id


@dataclass(frozen=True)
class Bucket:
    """One share action as the access rules see it."""

    bucket_id: str
    study_uids: frozenset[str]
    recipients: tuple[Recipient, ...]
    access_level: str
    sender_id: str = ""
    valid_until: datetime | None = None
    unlimited: bool = False
    anonymize: bool = False
    allow_download: bool = False
    two_factor: bool = False
    locked: bool = False
    revoked: bool = False
    expired: bool = False
    removed_study_uids: frozenset[str] = frozenset()
    revoked_recipient_ids: frozenset[str] = frozenset()
    parent_bucket_id: str | None = None

    def ends_at(self) -> datetime | None:
        """None: no end (unlimited, or no `valid_until` given)."""
        return None if self.unlimited else self.valid_until

    def current(self, now: datetime) -> bool:
        end = self.ends_at()
        return not self.expired and (end is None or now < end)

    def holds_study(self, study_uid: str) -> bool:
        return study_uid in self.study_uids and study_uid not in self.removed_study_uids


@dataclass(frozen=True)
class Subject:
    """The caller, from the token's claims and the identity read model."""

    id: str
    kind: str = "user"
    roles: frozenset[str] = frozenset()
    department_ids: frozenset[str] = frozenset()
    admin_of: frozenset[str] = frozenset()
    group_ids: frozenset[str] = frozenset()
    colleagues: Mapping[str, str] = field(default_factory=dict)
    """Group practice colleagues: user id -> the group they share with the subject."""
    deactivated: bool = False
    reference_id: str | None = None
    token_study_uid: str | None = None
    environment: str | None = None
    session_id: str | None = None
    """The token's login session (`sid`): a two-factor code opens its bucket in it only."""


@dataclass(frozen=True)
class StudyFacts:
    study_uid: str
    department_id: str | None = None
    owner_id: str | None = None


@dataclass(frozen=True)
class ReferenceFacts:
    reference_id: str
    study_uid: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    complies_with_rule: bool = True
    revoked: bool = False


@dataclass(frozen=True)
class AccessFacts:
    """Everything the model knows about one (subject, study) pair at `now`."""

    now: datetime
    study: StudyFacts | None
    buckets: tuple[Bucket, ...] = ()
    parents: Mapping[str, Bucket] = field(default_factory=dict)
    senders: Mapping[str, Subject] = field(default_factory=dict)
    """The senders of re-shares on the way up from `buckets`, as identity knows them now
    (own id, departments, groups): a re-share holds only while its sender holds its parent."""
    otp_verified_until: Mapping[tuple[str, str, str | None], datetime] = field(default_factory=dict)
    """(bucket id, user id, session id) -> until when the code entered in that session holds."""
    break_glass_until: datetime | None = None
    reference: ReferenceFacts | None = None
    patient_report: ReportAccess = "read"
    patient_download: bool = False
    codes_count_as_entered: bool = False
    """True for "who could open the study": a two-factor grant's holder can open it once they
    enter the code sent to them, so the grant counts (a request still needs the code)."""


def anonymous_number(bucket_id: str, study_uid: str) -> str:
    """The number that replaces the first name: stable per (bucket, study), six digits."""
    digest = hashlib.sha256(f"{bucket_id}\x00{study_uid}".encode()).hexdigest()
    return str(100000 + int(digest[:12], 16) % 900000)


def report_for_grant(access_level: str, anonymize: bool) -> ReportAccess:
    """Anonymized shares never give the report; images-only neither."""
    if anonymize:
        return "none"
    return REPORT_BY_LEVEL.get(access_level, "none")


def route(subject: Subject, bucket: Bucket) -> tuple[Recipient, str, str | None] | None:
    """How the subject is a recipient of the bucket: (recipient, via, group_id), best first."""
    routes: list[tuple[Recipient, str, str | None]] = []
    for r in bucket.recipients:
        if r.recipient_id in bucket.revoked_recipient_ids:
            continue
        if r.kind in ("user", "email") and r.holder == subject.id:
            routes.append((r, "grant", None))
        elif r.kind == "department" and r.recipient_id in subject.department_ids:
            routes.append((r, "grant", None))
        elif r.kind == "group" and r.recipient_id in subject.group_ids:
            routes.append((r, "group", r.recipient_id))
        elif r.kind in ("user", "email") and r.holder in subject.colleagues:
            routes.append((r, "group", subject.colleagues[r.holder]))
    routes.sort(key=lambda x: -PATH_PRIORITY[x[1]])
    return routes[0] if routes else None


def _was_recipient(subject: Subject, bucket: Bucket) -> bool:
    """Was the subject ever a recipient (before a revocation)? Tells 'revoked' from 'no grant'."""
    if not bucket.revoked_recipient_ids:
        return False
    unrevoked = Bucket(**{**bucket.__dict__, "revoked_recipient_ids": frozenset()})
    return route(subject, unrevoked) is not None


def sender_holds(sender: Subject | None, parent: Bucket) -> bool:
    """Does the sender of a re-share still hold its parent grant: a recipient of the parent in
    their own name, or through a department or group they are still in, not revoked?"""
    if sender is None:
        return False
    holder = Subject(id=sender.id, department_ids=sender.department_ids, group_ids=sender.group_ids)
    return route(holder, parent) is not None


def parent_holds(bucket: Bucket, study_uid: str, facts: AccessFacts, depth: int = 0) -> bool:
    """A re-share holds only while the bucket it came from still grants its sender the study
    (and that bucket's own parent still holds, up the chain). An unknown parent holds nothing."""
    if bucket.parent_bucket_id is None:
        return True
    parent = facts.parents.get(bucket.parent_bucket_id)
    if parent is None or depth > 16:
        return False
    if parent.revoked or not parent.holds_study(study_uid) or not parent.current(facts.now):
        return False
    if not sender_holds(facts.senders.get(bucket.sender_id), parent):
        return False
    return parent_holds(parent, study_uid, facts, depth + 1)


@dataclass(frozen=True)
class Path:
    via: str
    report: ReportAccess
    download: bool
    anonymized: bool
    reason: str
    valid_until: datetime | None = None
    bucket_id: str | None = None
    group_id: str | None = None
    anonymous_number: str | None = None


def bucket_refusal(bucket: Bucket, study_uid: str, facts: AccessFacts) -> str | None:
    """Why the bucket opens the study to none of its recipients now (revoked, the study taken
    out of it, its parent no longer holding, expired, locked), else None."""
    if bucket.revoked or not bucket.holds_study(study_uid):
        return "revoked"
    if not parent_holds(bucket, study_uid, facts):
        return "revoked"
    if not bucket.current(facts.now):
        return "expired"
    if bucket.locked:
        return "locked"
    return None


def evaluate_grant(
    subject: Subject, bucket: Bucket, study_uid: str, facts: AccessFacts
) -> Path | str | None:
    """A usable grant (`Path`), a refusal code, or None when the subject is no recipient."""
    if study_uid not in bucket.study_uids:
        return None
    found = route(subject, bucket)
    if found is None:
        return "revoked" if _was_recipient(subject, bucket) else None
    _, via, group_id = found
    ended = bucket_refusal(bucket, study_uid, facts)
    if ended is not None:
        return ended
    if bucket.two_factor and not facts.codes_count_as_entered:
        until = facts.otp_verified_until.get((bucket.bucket_id, subject.id, subject.session_id))
        if until is None or until <= facts.now:
            return "two_factor_required"
    end = bucket.ends_at()
    shared_how = "with your group" if via == "group" else "with you"
    return Path(
        via=via,
        report=report_for_grant(bucket.access_level, bucket.anonymize),
        download=bucket.allow_download,
        anonymized=bucket.anonymize,
        reason=(
            f"shared {shared_how} in bucket {bucket.bucket_id}"
            + (f" until {end.isoformat()}" if end else " without time limit")
        ),
        valid_until=end,
        bucket_id=bucket.bucket_id,
        group_id=group_id,
        anonymous_number=(
            anonymous_number(bucket.bucket_id, study_uid) if bucket.anonymize else None
        ),
    )


def _refused(study_uid: str, refusal: str, reason: str, **extra) -> AccessDecision:
    return AccessDecision(
        study_uid=study_uid,
        images=False,
        report="none",
        download=False,
        anonymized=False,
        via=None,
        reason=reason,
        refusal=refusal,
        **extra,
    )


def decide_for_patient(subject: Subject, study_uid: str, facts: AccessFacts) -> AccessDecision:
    """A patient token opens only the study of its reference number, while that number is
    usable; the report as the sending department allows (never write), no download unless
    the department allows it."""
    ref = facts.reference
    if subject.token_study_uid != study_uid or (ref is not None and ref.study_uid != study_uid):
        return _refused(study_uid, "not_your_study", "a patient token opens one study only")
    if facts.study is None:
        return _refused(study_uid, "unknown_study", NO_SUCH_STUDY)
    if ref is None or ref.reference_id != subject.reference_id:
        return _refused(study_uid, "reference_number_unknown", "unknown reference number")
    if ref.revoked:
        return _refused(study_uid, "reference_number_revoked", "the reference number was revoked")
    if not ref.complies_with_rule:
        return _refused(
            study_uid,
            "reference_number_breaks_rule",
            "the reference number breaks the department's complexity rule",
        )
    if ref.valid_from is not None and facts.now < ref.valid_from:
        return _refused(
            study_uid, "reference_number_not_yet_valid", "the reference number is not valid yet"
        )
    if ref.valid_to is not None and facts.now >= ref.valid_to:
        return _refused(study_uid, "reference_number_expired", "the reference number expired")
    report: ReportAccess = "read" if facts.patient_report != "none" else "none"
    return AccessDecision(
        study_uid=study_uid,
        images=True,
        report=report,
        download=facts.patient_download,
        anonymized=False,
        via="reference_number",
        reason="patient access with a reference number",
        reference_id=ref.reference_id,
        valid_until=ref.valid_to,
    )


def paths(
    subject: Subject, study: StudyFacts, facts: AccessFacts
) -> tuple[list[Path], list[tuple[str, Bucket]]]:
    """Every path by which a (user) subject opens the study, and the refusals of the buckets
    that name them but do not open (revoked, expired, locked, code still to enter)."""
    study_uid = study.study_uid
    candidates: list[Path] = []
    refusals: list[tuple[str, Bucket]] = []
    if study.owner_id and study.owner_id == subject.id:
        candidates.append(Path("owner", "write", True, False, "you own this study"))
    if (
        study.department_id
        and study.department_id in subject.department_ids
        and subject.roles & STUDY_ROLES
    ):
        candidates.append(
            Path(
                "department",
                "write",
                True,
                False,
                f"member of the study's department {study.department_id}",
            )
        )
    if study.owner_id and study.owner_id in subject.colleagues and not study.department_id:
        # a colleague's own uploads; one filed under a department is the department's to share
        candidates.append(
            Path(
                "group",
                "read",
                True,
                False,
                "a colleague of your group practice owns this study",
                group_id=subject.colleagues[study.owner_id],
            )
        )
    for bucket in facts.buckets:
        outcome = evaluate_grant(subject, bucket, study_uid, facts)
        if isinstance(outcome, Path):
            candidates.append(outcome)
        elif isinstance(outcome, str):
            refusals.append((outcome, bucket))
    if (
        facts.break_glass_until is not None
        and facts.now < facts.break_glass_until
        and not any(code in GLASS_STOPPERS for code, _ in refusals)
    ):
        candidates.append(
            Path(
                "break_the_glass",
                "read",
                False,
                False,
                f"break-the-glass unlock until {facts.break_glass_until.isoformat()}",
                valid_until=facts.break_glass_until,
            )
        )
    if "service_desk" in subject.roles:
        candidates.append(Path("service_desk", "read", False, False, "service desk (audited)"))
    return candidates, refusals


def decide(subject: Subject, study_uid: str, facts: AccessFacts) -> AccessDecision:
    """The access decision of one subject for one study."""
    if subject.kind == "patient":
        return decide_for_patient(subject, study_uid, facts)
    study = facts.study
    if study is None:
        return _refused(study_uid, "unknown_study", NO_SUCH_STUDY)
    if subject.kind != "user":
        return _refused(study_uid, "no_grant", "only users and patients open studies")
    if subject.deactivated:
        return _refused(study_uid, "deactivated", "the account is deactivated")
    candidates, refusals = paths(subject, study, facts)
    if candidates:
        return combine(study_uid, candidates)
    if refusals:
        code, bucket = max(refusals, key=lambda r: _REFUSAL_RANK.get(r[0], 0))
        texts = {
            "revoked": "your access was revoked",
            "expired": "your access expired",
            "locked": "the bucket is locked after too many wrong one-time passwords",
            "two_factor_required": "enter the one-time password sent to your mobile first",
        }
        return _refused(
            study_uid,
            code,
            f"{texts[code]} (bucket {bucket.bucket_id})",
            bucket_id=bucket.bucket_id,
            two_factor_bucket_id=bucket.bucket_id if code == "two_factor_required" else None,
        )
    return _refused(study_uid, "no_grant", "you have no access to this study")


def _end_key(end: datetime | None) -> float:
    return float("inf") if end is None else end.timestamp()


def combine(study_uid: str, candidates: Iterable[Path]) -> AccessDecision:
    """The most permissive non-anonymized path wins; report and download are merged over the
    paths of the same kind (all non-anonymized, or all anonymized when no other exists)."""
    pool = list(candidates)
    clear = [c for c in pool if not c.anonymized]
    chosen = clear or pool
    primary = max(
        chosen,
        key=lambda c: (
            REPORT_RANK[c.report],
            c.download,
            PATH_PRIORITY[c.via],
            _end_key(c.valid_until),
        ),
    )
    report = max((c.report for c in chosen), key=REPORT_RANK.__getitem__)
    timed = [c.valid_until for c in chosen]
    valid_until = None if any(t is None for t in timed) else max(t for t in timed if t)
    return AccessDecision(
        study_uid=study_uid,
        images=True,
        report=report,
        download=any(c.download for c in chosen),
        anonymized=primary.anonymized,
        via=primary.via,
        reason=primary.reason,
        bucket_id=primary.bucket_id,
        group_id=primary.group_id,
        anonymous_number=primary.anonymous_number,
        valid_until=valid_until,
    )
