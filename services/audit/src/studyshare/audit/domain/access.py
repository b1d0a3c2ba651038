"""The Access tab of a study, and who could open it at a moment, folded from its log entries.

Pure: the caller hands over the entries that touch the study (and, for `access_at`, the
identity entries of the groups and departments involved), in the order they happened.

A patient reference number is named by its reference id (`studyshare.plumbing.reference_ids`):
the log never holds the number (see `entries`), so neither does anything folded from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from studyshare.access_policy.glass import GlassFacts, why_not_break_the_glass
from studyshare.access_policy.reference import complies
from studyshare.access_policy.rules import (
    AccessFacts,
    Bucket,
    Recipient,
    ReferenceFacts,
    StudyFacts,
    Subject,
    bucket_refusal,
    decide,
    paths,
    route,
)
from studyshare.audit.domain.entries import utc
from studyshare.contracts.events.identity import ReferenceNumberRule
from studyshare.contracts.events.study import ReferenceNumberShape


def when(value: Any) -> datetime | None:
    """A timestamp from an entry (datetime) or a payload (ISO string)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return utc(value)
    return utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def chronological(entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(
        entries,
        key=lambda e: (when(e["occurred_at"]), str(e.get("stream")), e.get("aggregate_version", 0)),
    )


@dataclass
class StudyAccessFold:
    """Folds a study's entries into the sections of the manual's Access tab."""

    study_uid: str
    study: dict[str, Any] = field(default_factory=dict)
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    break_the_glass: list[dict[str, Any]] = field(default_factory=list)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    downloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    references: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: int = 0

    def fold(self, entries: Iterable[Mapping[str, Any]], until: datetime | None = None) -> None:
        for entry in chronological(entries):
            if until is not None and when(entry["occurred_at"]) > until:
                break
            self.apply(entry)

    def apply(self, entry: Mapping[str, Any]) -> None:
        handler = getattr(self, f"_on_{entry['event_type']}", None)
        self.seen += 1
        if handler is not None:
            handler(entry["payload"], entry)

    # -- study ------------------------------------------------------------------------------
    def _on_StudyReceived(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        self.study = {
            "department_id": p.get("department_id"),
            "owner_id": p.get("owner_id"),
            "patient_id": p.get("patient_id"),
            "received_at": when(e["occurred_at"]),
        }

    # -- buckets ----------------------------------------------------------------------------
    def _on_StudyShared(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        self.buckets[p["bucket_id"]] = {
            "bucket_id": p["bucket_id"],
            "parent_bucket_id": p.get("parent_bucket_id"),
            "sender_id": p.get("sender_id"),
            "sending_department_id": p.get("sending_department_id"),
            "study_uids": list(p.get("study_uids") or []),
            "access_level": p.get("access_level"),
            "reason": p.get("reason"),
            "valid_until": when(p.get("valid_until")),
            "unlimited": bool(p.get("unlimited")),
            "anonymize": bool(p.get("anonymize")),
            "two_factor": bool(p.get("two_factor")),
            "allow_download": bool(p.get("allow_download")),
            "allow_further_sharing": bool(p.get("allow_further_sharing")),
            "label": (p.get("label") or {}).get("text"),
            "granted_at": when(e["occurred_at"]),
            "recipients": {
                r["recipient_id"]: {
                    "recipient_id": r["recipient_id"],
                    "kind": r.get("kind", "user"),
                    "email": r.get("email"),
                    "revoked_at": None,
                    "revoked_by": None,
                    "otp_failures": 0,
                    "verified_until": None,
                    "user_id": None,
                    "accepted_at": None,
                }
                for r in p.get("recipients") or []
            },
            "revoked_at": None,
            "revoked_by": None,
            "study_removed_at": None,
            "study_removed_by": None,
            "locked_at": None,
            "failed_attempts": 0,
            "unlocked_at": None,
            "unlocked_by": None,
            "expired_at": None,
        }

    def _bucket(self, p: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.buckets.get(str(p.get("bucket_id")))

    def _on_AccessRevoked(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        bucket = self._bucket(p)
        if bucket is None:
            return
        at, by = when(e["occurred_at"]), p.get("revoked_by")
        if p.get("scope") == "bucket":
            bucket["revoked_at"], bucket["revoked_by"] = at, by
        elif p.get("scope") == "study" and p.get("study_uid") == self.study_uid:
            bucket["study_removed_at"], bucket["study_removed_by"] = at, by
        elif p.get("scope") == "recipient" and p.get("recipient_id") in bucket["recipients"]:
            recipient = bucket["recipients"][p["recipient_id"]]
            recipient["revoked_at"], recipient["revoked_by"] = at, by

    def _on_InvitationAccepted(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        bucket = self._bucket(p)
        if bucket is not None and p.get("recipient_id") in bucket["recipients"]:
            recipient = bucket["recipients"][p["recipient_id"]]
            recipient["user_id"], recipient["accepted_at"] = (
                p.get("user_id"),
                when(e["occurred_at"]),
            )

    def _on_OTPFailed(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        bucket = self._bucket(p)
        if bucket is not None:
            bucket["failed_attempts"] = int(p.get("consecutive_failures") or 0)
            if p.get("recipient_id") in bucket["recipients"]:
                bucket["recipients"][p["recipient_id"]]["otp_failures"] += 1

    def _on_OTPVerified(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        bucket = self._bucket(p)
        if bucket is not None:
            bucket["failed_attempts"] = 0
            if p.get("recipient_id") in bucket["recipients"]:
                bucket["recipients"][p["recipient_id"]]["verified_until"] = when(
                    p.get("verified_until")
                )

    def _on_BucketLocked(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        bucket = self._bucket(p)
        if bucket is not None:
            bucket["locked_at"] = when(e["occurred_at"])
            bucket["failed_attempts"] = int(p.get("failed_attempts") or 0)
            bucket["unlocked_at"] = bucket["unlocked_by"] = None

    def _on_BucketUnlocked(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        bucket = self._bucket(p)
        if bucket is not None:
            bucket["unlocked_at"], bucket["unlocked_by"] = (
                when(e["occurred_at"]),
                p.get("unlocked_by"),
            )
            bucket["locked_at"], bucket["failed_attempts"] = None, 0

    def _on_BucketExpired(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        bucket = self._bucket(p)
        if bucket is not None:
            bucket["expired_at"] = when(e["occurred_at"])

    # -- break-the-glass, transfers, downloads ----------------------------------------------
    def _on_BreakTheGlassUsed(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        self.break_the_glass.append(
            {
                "user_id": p.get("user_id"),
                "reason": p.get("reason"),
                "department_id": p.get("department_id"),
                "at": when(e["occurred_at"]),
                "valid_until": when(p.get("valid_until")),
            }
        )

    def _transfer(self, p: Mapping[str, Any], e: Mapping[str, Any], status: str) -> None:
        self.transfers[str(p.get("transfer_id"))] = {
            "transfer_id": p.get("transfer_id"),
            "destination_kind": p.get("destination_kind"),
            "destination_id": p.get("destination_id"),
            "status": status,
            "attempts": int(p.get("attempts") or 0),
            "reason": p.get("reason"),
            "requested_by": p.get("requested_by") or e.get("actor", {}).get("id"),
            "instance_count": p.get("instance_count"),
            "at": when(e["occurred_at"]),
        }

    def _on_StudyForwarded(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        self._transfer(p, e, "done")

    def _on_StudyForwardFailed(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        self._transfer(p, e, "failed" if p.get("final") else "retrying")

    def _download(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        # One row per registered download. Never keyed by the correlation id: a client chooses
        # it (X-Correlation-ID), and one id sent with every download showed a single row.
        key = str(e.get("event_id"))
        self.downloads.setdefault(
            key,
            {
                "user_id": p.get("user_id") or e.get("actor", {}).get("id"),
                "reference_id": p.get("reference_id"),
                "via": p.get("via"),
                "bucket_id": p.get("bucket_id"),
                "anonymized": bool(p.get("anonymized")),
                "at": when(e["occurred_at"]),
            },
        )

    def _on_StudyDownloaded(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        self._download(p, e)

    def _on_StudyAccessed(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        if p.get("action") == "download":
            self._download(p, e)

    # -- reference numbers (by their reference ids) -------------------------------------------
    def _reference(self, p: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.references.get(str(p.get("reference_id")))

    def _on_ReferenceNumberIssued(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        self.references[p["reference_id"]] = {
            "reference_id": p["reference_id"],
            "issued_at": when(e["occurred_at"]),
            "issued_by": p.get("issued_by") or e.get("actor", {}).get("id"),
            "valid_from": when(p.get("valid_from")),
            "valid_to": when(p.get("valid_to")),
            "complies_with_rule": bool(p.get("complies_with_rule", True)),
            # what the complexity rule asks of the number, without the number
            "number_shape": p.get("number_shape"),
            "department_id": p.get("department_id"),
            "pincode_required": bool(p.get("pincode_required")),
            "pincode_set": False,
            "pincode_set_at": None,
            "pincode_set_by": None,
            "pincode_failed_attempts": 0,
            "login_failed_attempts": 0,
            "logins": 0,
            "last_login_at": None,
            "revoked_at": None,
            "revoked_by": None,
        }

    def _on_ReferenceNumberRevoked(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        ref = self._reference(p)
        if ref is not None:
            ref["revoked_at"], ref["revoked_by"] = when(e["occurred_at"]), p.get("revoked_by")

    def _on_PincodeSet(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        ref = self._reference(p)
        if ref is not None:
            ref.update(
                pincode_set=True,
                pincode_set_at=when(e["occurred_at"]),
                pincode_set_by=p.get("set_by"),
                pincode_failed_attempts=0,
            )

    def _on_PincodeFailed(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        ref = self._reference(p)
        if ref is not None:
            ref["pincode_failed_attempts"] = max(
                ref["pincode_failed_attempts"] + 1, int(p.get("failed_attempts") or 0)
            )

    def _on_PatientLoginFailed(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        ref = self._reference(p)
        if ref is not None:
            ref["login_failed_attempts"] = int(p.get("failed_attempts") or 0)

    def _on_PatientLoginSucceeded(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        ref = self._reference(p)
        if ref is not None:
            ref["logins"] += 1
            ref["last_login_at"] = when(e["occurred_at"])
            ref["login_failed_attempts"] = 0

    # -- states ----------------------------------------------------------------------------
    @staticmethod
    def bucket_state(bucket: Mapping[str, Any], at: datetime) -> str:
        """active, locked, revoked or expired (for this study), as seen at `at`."""
        if bucket["revoked_at"] or bucket["study_removed_at"]:
            return "revoked"
        if bucket["expired_at"] or (
            not bucket["unlimited"] and bucket["valid_until"] and bucket["valid_until"] <= at
        ):
            return "expired"
        if bucket["locked_at"]:
            return "locked"
        return "active"

    @staticmethod
    def reference_state(ref: Mapping[str, Any], at: datetime) -> str:
        if ref["revoked_at"]:
            return "revoked"
        if not ref["complies_with_rule"]:
            return "non_compliant"
        if ref["valid_from"] and at < ref["valid_from"]:
            return "not_yet_valid"
        if ref["valid_to"] and at > ref["valid_to"]:
            return "expired"
        if ref["pincode_required"] and not ref["pincode_set"]:
            return "awaiting_pincode"
        return "active"

    def overview(self, now: datetime) -> dict[str, Any]:
        """The Access tab: users, groups, break-the-glass, transfers, buckets, references."""
        grants: list[dict[str, Any]] = []
        buckets = []
        for bucket in self.buckets.values():
            state = self.bucket_state(bucket, now)
            recipients = []
            for r in bucket["recipients"].values():
                r_state = "revoked" if r["revoked_at"] else state
                recipients.append({**r, "state": r_state})
                grants.append(
                    {
                        "recipient_id": r["recipient_id"],
                        "kind": r["kind"],
                        "email": r["email"],
                        "access_level": bucket["access_level"],
                        "valid_until": bucket["valid_until"],
                        "unlimited": bucket["unlimited"],
                        "granted_at": bucket["granted_at"],
                        "granted_by": bucket["sender_id"],
                        "bucket_id": bucket["bucket_id"],
                        "two_factor": bucket["two_factor"],
                        "anonymize": bucket["anonymize"],
                        "state": r_state,
                        "revoked_at": r["revoked_at"] or bucket["revoked_at"],
                        "revoked_by": r["revoked_by"] or bucket["revoked_by"],
                    }
                )
            buckets.append({**bucket, "state": state, "recipients": recipients})
        transfers = sorted(self.transfers.values(), key=lambda t: t["at"])
        latest_rsw: dict[str, dict[str, Any]] = {}
        for t in transfers:
            if t["destination_kind"] == "rsw":
                latest_rsw[str(t["destination_id"])] = t
        return {
            "study_uid": self.study_uid,
            "department_id": self.study.get("department_id"),
            "owner_id": self.study.get("owner_id"),
            "received_at": self.study.get("received_at"),
            "users": [g for g in grants if g["kind"] in ("user", "email")],
            "groups": [g for g in grants if g["kind"] == "group"],
            "departments": [g for g in grants if g["kind"] == "department"],
            "break_the_glass": self.break_the_glass,
            "transfers": transfers,
            "rsw": list(latest_rsw.values()),
            "downloads": sorted(self.downloads.values(), key=lambda d: d["at"]),
            "buckets": buckets,
            "reference_numbers": [
                {**ref, "state": self.reference_state(ref, now)} for ref in self.references.values()
            ],
        }


#: the Access tab's sections a sender does not see (they concern the study, not their shares)
NOT_FOR_SENDERS = ("break_the_glass", "transfers", "rsw", "downloads", "reference_numbers")


def shown_to(tab: Mapping[str, Any], view: str, reader_id: str) -> dict[str, Any]:
    """The Access tab as the reader's view allows (see `rules.access_view`).

    `full` and the exam owner's and the sending department's views keep every grant; the
    reference numbers (a patient's way in) stay with the department's admins, auditors and the
    service desk. A sender sees the buckets they sent and their grants only."""
    shown = {**tab, "view": view}
    if view == "full":
        return shown
    shown["reference_numbers"] = []
    if view in ("owner", "department"):
        return shown
    for section in ("users", "groups", "departments"):
        shown[section] = [g for g in tab[section] if g["granted_by"] == reader_id]
    shown["buckets"] = [b for b in tab["buckets"] if b["sender_id"] == reader_id]
    for section in NOT_FOR_SENDERS:
        shown[section] = []
    return shown


@dataclass
class Directory:
    """Group members and department members, folded from identity entries; the names of
    groups, users and departments (as identity registered them)."""

    groups: dict[str, set[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    departments: dict[str, set[str]] = field(default_factory=dict)  # user -> departments
    deactivated: set[str] = field(default_factory=set)
    lapsed: set[tuple[str, str]] = field(default_factory=set)  # (group, user): till confirmed
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    environments: dict[str, str] = field(default_factory=dict)  # user -> their environment
    department_facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """department -> its institution, country and break-the-glass policy"""
    member_of: dict[str, frozenset[str]] = field(default_factory=dict)
    """user -> the departments access counts them in (their own and those they administer),
    as the user's identity events say: the study store's rule."""
    _people: dict[str, dict[str, str]] = field(default_factory=dict)

    def fold(self, entries: Iterable[Mapping[str, Any]], until: datetime) -> None:
        for e in chronological(entries):
            if when(e["occurred_at"]) > until:
                break
            p, t = e["payload"], e["event_type"]
            if t == "GroupCreated":
                members = {*(p.get("member_ids") or []), *(p.get("admin_ids") or [])}
                members.add(p.get("primary_contact_id"))
                self.groups[p["group_id"]] = {m for m in members if m}
                self.names[p["group_id"]] = p.get("name")
            elif t == "GroupMemberAdded":
                self.groups.setdefault(p["group_id"], set()).add(p["user_id"])
            elif t == "GroupMemberRemoved":
                self.groups.setdefault(p["group_id"], set()).discard(p["user_id"])
                self.lapsed.discard((p["group_id"], p["user_id"]))
            elif t == "GroupMembershipLapsed":  # as the study store: no access through it
                self.lapsed.add((p["group_id"], p["user_id"]))
            elif t == "GroupMembershipConfirmed":
                self.lapsed.discard((p["group_id"], p["user_id"]))
            elif t in ("UserRegistered", "UserRolesChanged"):
                self.departments[p["user_id"]] = set(p.get("department_ids") or [])
                self.roles[p["user_id"]] = frozenset(p.get("roles") or ())
                if p.get("environment"):
                    self.environments[p["user_id"]] = p["environment"]
                self.member_of[p["user_id"]] = frozenset(
                    {*(p.get("department_ids") or ()), *(p.get("admin_of") or ())}
                )
                self._name_user(p)
            elif t == "UserProfileChanged":
                self._name_user(p)
            elif t == "DepartmentCreated":
                self.names[p["department_id"]] = p.get("name")
                self.department_facts.setdefault(p["department_id"], {}).update(
                    institution_id=p.get("institution_id"), country=p.get("country")
                )
            elif t == "DepartmentPolicySet":
                self.department_facts.setdefault(p["department_id"], {}).update(
                    break_the_glass=p.get("break_the_glass") or "institution",
                    reference_number_rule=p.get("reference_number_rule"),
                )
            elif t == "DepartmentAdminAssigned":
                self.departments.setdefault(p["user_id"], set()).add(p["department_id"])
            elif t == "UserDeactivated":
                self.deactivated.add(p["user_id"])

    def _name_user(self, p: Mapping[str, Any]) -> None:
        """A user's name: first and last name, each as last registered or changed."""
        person = self._people.setdefault(p["user_id"], {})
        person.update({k: p[k] for k in ("first_name", "last_name") if p.get(k)})
        name = " ".join(person[k] for k in ("first_name", "last_name") if person.get(k))
        if name:
            self.names[p["user_id"]] = name

    def group_members(self, group_id: str) -> list[str]:
        """Who opens through the group: not the deactivated, nor a lapsed membership."""
        return sorted(
            u
            for u in self.groups.get(group_id, set()) - self.deactivated
            if (group_id, u) not in self.lapsed
        )

    def institution_of(self, department_id: str) -> str:
        """A department's institution: the one it names, else the department itself."""
        return self.department_facts.get(department_id, {}).get("institution_id") or department_id

    def glass_facts(self, department_id: str | None, subject: Subject) -> GlassFacts:
        """What the study department's break-the-glass policy asks of the user."""
        department = self.department_facts.get(department_id or "", {})
        return GlassFacts(
            study_known=True,
            policy=department.get("break_the_glass") or "institution",
            institution_id=self.institution_of(department_id) if department_id else None,
            environment=department.get("country"),
            caller_institutions=frozenset(map(self.institution_of, subject.department_ids)),
            caller_environment=self.environments.get(subject.id),
        )

    def reference_rule(self, department_id: str | None) -> ReferenceNumberRule:
        """The department's current complexity rule for reference numbers."""
        raw = self.department_facts.get(department_id or "", {}).get("reference_number_rule")
        return ReferenceNumberRule.model_validate(raw) if raw else ReferenceNumberRule()

    def groups_of(self, user_id: str) -> frozenset[str]:
        """The groups the user opens through (a lapsed membership does not count)."""
        return frozenset(
            g
            for g, members in self.groups.items()
            if user_id in members and (g, user_id) not in self.lapsed
        )

    def holder(self, user_id: str) -> Subject:
        """A re-share's sender as the policy asks whether they still hold the parent grant."""
        return Subject(
            id=user_id,
            department_ids=self.member_of.get(user_id, frozenset()),
            group_ids=self.groups_of(user_id),
        )

    def subject(self, user_id: str) -> Subject:
        """A user as the access policy sees them (roles, departments, groups, colleagues)."""
        groups = self.groups_of(user_id)
        colleagues: dict[str, str] = {}
        for group_id in sorted(groups):
            for member in sorted(self.groups[group_id]):
                if member != user_id and (group_id, member) not in self.lapsed:
                    colleagues.setdefault(member, group_id)
        return Subject(
            id=user_id,
            roles=self.roles.get(user_id, frozenset()),
            department_ids=self.member_of.get(user_id, frozenset()),
            group_ids=groups,
            colleagues=colleagues,
            deactivated=user_id in self.deactivated,
        )

    def department_members(self, department_id: str) -> list[str]:
        """The department's people: its members and admins, not the deactivated."""
        people = {u for u, deps in self.departments.items() if department_id in deps}
        people |= {u for u, deps in self.member_of.items() if department_id in deps}
        return sorted(people - self.deactivated)


def policy_bucket(study_uid: str, bucket: Mapping[str, Any]) -> Bucket:
    """A folded bucket as the access policy sees it."""
    recipients = bucket["recipients"].values()
    return Bucket(
        bucket_id=bucket["bucket_id"],
        study_uids=frozenset(bucket["study_uids"]),
        recipients=tuple(Recipient(r["recipient_id"], r["kind"], r["user_id"]) for r in recipients),
        access_level=bucket["access_level"] or "images",
        sender_id=bucket["sender_id"] or "",
        valid_until=bucket["valid_until"],
        unlimited=bucket["unlimited"],
        anonymize=bucket["anonymize"],
        allow_download=bucket["allow_download"],
        two_factor=bucket["two_factor"],
        locked=bucket["locked_at"] is not None,
        revoked=bucket["revoked_at"] is not None,
        expired=bucket["expired_at"] is not None,
        removed_study_uids=frozenset({study_uid}) if bucket["study_removed_at"] else frozenset(),
        revoked_recipient_ids=frozenset(r["recipient_id"] for r in recipients if r["revoked_at"]),
        parent_bucket_id=bucket["parent_bucket_id"],
    )


@dataclass
class CouldOpen:
    """'Who could open the study at T', answered by the access policy the study store decides
    with (`studyshare.access_policy`), over the facts folded from the log up to T."""

    fold: StudyAccessFold
    directory: Directory
    t: datetime

    def __post_init__(self) -> None:
        uid = self.fold.study_uid
        self.study = StudyFacts(
            uid, self.fold.study.get("department_id"), self.fold.study.get("owner_id")
        )
        self.buckets = {b: policy_bucket(uid, v) for b, v in self.fold.buckets.items()}
        senders = {b.sender_id for b in self.buckets.values() if b.parent_bucket_id}
        self.facts = AccessFacts(
            now=self.t,
            study=self.study,
            buckets=tuple(self.buckets[b] for b in sorted(self.buckets)),
            parents=self.buckets,
            senders={s: self.directory.holder(s) for s in senders},
            codes_count_as_entered=True,
        )

    def candidates(self) -> set[str]:
        """Every user a path could lead through: the study's department, its owner and their
        group colleagues, the buckets' recipients (in person, through a group or department,
        or as a group colleague of a recipient), and whoever broke the glass."""
        d, study = self.directory, self.study
        found = set(d.department_members(study.department_id)) if study.department_id else set()
        people = {study.owner_id} - {None}
        for bucket in self.buckets.values():
            for r in bucket.recipients:
                if r.kind == "group":
                    found |= set(d.group_members(r.recipient_id))
                elif r.kind == "department":
                    found |= set(d.department_members(r.recipient_id))
                else:
                    people.add(r.holder)
        for person in people:
            found |= {person, *d.subject(person).colleagues}
        found |= {b["user_id"] for b in self.fold.break_the_glass if b.get("user_id")}
        return found

    def glass_until(self, subject: Subject) -> datetime | None:
        """When the user's break-the-glass unlocks of the study up to T end (the latest end: a
        second unlock never shortens the first), while the study department's policy still
        lets them in (as the study store decides)."""
        used = [b for b in self.fold.break_the_glass if b["user_id"] == subject.id]
        used = [b for b in used if b["at"] <= self.t]
        if not used:
            return None
        glass = self.directory.glass_facts(self.study.department_id, subject)
        if why_not_break_the_glass(subject.kind, subject.roles, glass) is not None:
            return None
        return max(b["valid_until"] for b in used)

    def user_rows(self, user_id: str) -> list[dict[str, Any]]:
        subject = self.directory.subject(user_id)
        if subject.deactivated:
            return []
        facts = replace(self.facts, break_glass_until=self.glass_until(subject))
        found, _ = paths(subject, self.study, facts)
        rows = []
        for path in found:
            if path.via == "service_desk":
                continue  # the service desk is one row of its own (see `access_at`)
            row: dict[str, Any] = {"principal_kind": "user", "principal_id": user_id}
            row["via"] = path.via
            if path.bucket_id is not None:
                bucket = self.fold.buckets[path.bucket_id]
                row |= _grant(bucket)
                how = route(subject, self.buckets[path.bucket_id])
                if how is not None and how[0].recipient_id != user_id:
                    row["through"] = how[0].recipient_id
            elif path.via == "department":
                row["through"] = self.study.department_id
            elif path.via == "group":
                row["through"] = path.group_id
            elif path.via == "break_the_glass":
                used = [b for b in self.fold.break_the_glass if b["user_id"] == user_id]
                row |= {
                    "reason": used[-1]["reason"],
                    "granted_at": used[-1]["at"],
                    "valid_until": path.valid_until,
                }
            rows.append(row)
        return rows


def _grant(bucket: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "bucket_id": bucket["bucket_id"],
        "access_level": bucket["access_level"],
        "valid_until": bucket["valid_until"],
        "granted_at": bucket["granted_at"],
        "granted_by": bucket["sender_id"],
        "two_factor": bucket["two_factor"],
    }


def access_at(fold: StudyAccessFold, directory: Directory, t: datetime) -> list[dict[str, Any]]:
    """Who could open the study at `t`, and through which path (fold both up to `t` first).

    Each user is decided by the access policy itself, as the study store would decide them at
    `t`; a two-factor grant counts (its holder opens it with the code sent to them). Beside the
    users: the departments and groups a grant names, an e-mail invitation not yet accepted,
    the service desk (every member opens every study, each opening logged) and the patient's
    reference numbers (by their reference ids: `ref:<reference id>`)."""
    if not fold.study:
        return []  # not received yet: the policy knows no such study
    could = CouldOpen(fold, directory, t)
    rows: list[dict[str, Any]] = []

    def add(kind: str, principal: str, via: str, **grant: Any) -> None:
        rows.append({"principal_kind": kind, "principal_id": principal, "via": via, **grant})

    uid = fold.study_uid
    if could.study.department_id:
        add("department", could.study.department_id, "department")
    for bucket_id, bucket in sorted(could.buckets.items()):
        if bucket_refusal(bucket, uid, could.facts) is not None:
            continue
        for r in bucket.recipients:
            if r.recipient_id in bucket.revoked_recipient_ids:
                continue
            grant = _grant(fold.buckets[bucket_id])
            if r.kind == "group":
                add("group", r.recipient_id, "group", **grant)
            elif r.kind == "department":
                add("department", r.recipient_id, "grant", **grant)
            elif r.kind == "email" and r.user_id is None:
                add("user", r.recipient_id, "grant", **grant)  # an invitation not yet accepted
    for user_id in sorted(could.candidates()):
        rows.extend(could.user_rows(user_id))
    add("role", "service_desk", "service_desk")
    for ref in fold.references.values():
        if _patient_opens(uid, ref, directory, t):
            add(
                "patient",
                f"ref:{ref['reference_id']}",
                "reference_number",
                reference_id=ref["reference_id"],
                granted_at=ref["issued_at"],
                valid_until=ref["valid_to"],
            )
    return rows


def _patient_opens(
    study_uid: str, ref: Mapping[str, Any], directory: Directory, t: datetime
) -> bool:
    """A patient logged in with the number opens the study at `t` (the policy's rule: in its
    validity, not revoked, meeting the department's current complexity rule), once the
    pincode the department asks for is set (no login before that).

    The log holds no number: the current rule is checked on the number's shape
    (`number_shape` of its issue: length and kinds of characters), as the study store does
    (no shape: not usable)."""
    ref_id = ref["reference_id"]
    complies_now = bool(ref["complies_with_rule"] and ref.get("number_shape")) and complies(
        ReferenceNumberShape.model_validate(ref["number_shape"]),
        directory.reference_rule(ref["department_id"]),
    )
    patient = Subject(
        id=f"pat_{ref_id}", kind="patient", reference_id=ref_id, token_study_uid=study_uid
    )
    facts = AccessFacts(
        now=t,
        study=StudyFacts(study_uid),
        reference=ReferenceFacts(
            reference_id=ref_id,
            study_uid=study_uid,
            valid_from=ref["valid_from"],
            valid_to=ref["valid_to"],
            complies_with_rule=complies_now,
            revoked=ref["revoked_at"] is not None,
        ),
    )
    if ref["pincode_required"] and not ref["pincode_set"]:
        return False
    return decide(patient, study_uid, facts).images
