"""The Access tab of a study, and who could open it at a moment, folded from its log entries.

Pure: the caller hands over the entries that touch the study (and, for `access_at`, the
identity entries of the groups and departments involved), in the order they happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from studyshare.audit.domain.entries import utc


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
                "reference_number": p.get("reference_number"),
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

    # -- reference numbers ------------------------------------------------------------------
    def _reference(self, p: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.references.get(str(p.get("reference_number")))

    def _on_ReferenceNumberIssued(self, p: Mapping[str, Any], e: Mapping[str, Any]) -> None:
        self.references[p["reference_number"]] = {
            "reference_number": p["reference_number"],
            "issued_at": when(e["occurred_at"]),
            "issued_by": p.get("issued_by") or e.get("actor", {}).get("id"),
            "valid_from": when(p.get("valid_from")),
            "valid_to": when(p.get("valid_to")),
            "complies_with_rule": bool(p.get("complies_with_rule", True)),
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
                self._name_user(p)
            elif t == "UserProfileChanged":
                self._name_user(p)
            elif t == "DepartmentCreated":
                self.names[p["department_id"]] = p.get("name")
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

    def department_members(self, department_id: str) -> list[str]:
        return sorted(
            u
            for u, deps in self.departments.items()
            if department_id in deps and u not in self.deactivated
        )


def _routes(directory: Directory, bucket: Mapping[str, Any], user_id: str) -> list[dict[str, Any]]:
    """The bucket's recipients through which the user is (or was, if revoked) a recipient: in
    their own name, or a group or department they are in (as the study store decides)."""
    found = []
    for r in bucket["recipients"].values():
        rid, kind = r["recipient_id"], r["kind"]
        if (
            (kind in ("user", "email") and (r.get("user_id") or rid) == user_id)
            or (kind == "group" and user_id in directory.groups.get(rid, ()))
            or (kind == "department" and rid in directory.departments.get(user_id, ()))
        ):
            found.append(r)
    return found


def parent_holds(
    fold: StudyAccessFold, directory: Directory, bucket: Mapping[str, Any], t: datetime
) -> bool:
    """A re-share counts only while its sender still holds the parent grant (a recipient not
    revoked, in their own name or through a group or department they are in at `t`) and the
    parent still holds the study, up the chain; an unknown parent holds nothing."""
    for _ in range(17):
        parent_id = bucket.get("parent_bucket_id")
        if not parent_id:
            return True
        parent = fold.buckets.get(parent_id)
        if parent is None or StudyAccessFold.bucket_state(parent, t) not in ("active", "locked"):
            return False
        routes = _routes(directory, parent, str(bucket.get("sender_id")))
        if not any(r["revoked_at"] is None for r in routes):
            return False
        bucket = parent
    return False


def glass_stopped(fold: StudyAccessFold, directory: Directory, user_id: str, t: datetime) -> bool:
    """Break-the-glass never opens over a bucket the user was in that was revoked, expired or
    locked at `t` (the study store's rule)."""
    for bucket in fold.buckets.values():
        routes = _routes(directory, bucket, user_id)
        if not routes:
            continue
        if StudyAccessFold.bucket_state(bucket, t) != "active":
            return True
        if all(r["revoked_at"] for r in routes) or not parent_holds(fold, directory, bucket, t):
            return True
    return False


def access_at(fold: StudyAccessFold, directory: Directory, t: datetime) -> list[dict[str, Any]]:
    """Who could open the study at `t`, and through which grant (fold up to `t` first)."""
    rows: list[dict[str, Any]] = []

    def add(kind: str, principal: str, via: str, **grant: Any) -> None:
        rows.append({"principal_kind": kind, "principal_id": principal, "via": via, **grant})

    department = fold.study.get("department_id")
    if department:
        add("department", department, "department")
        for user in directory.department_members(department):
            add("user", user, "department", through=department)
    if fold.study.get("owner_id"):
        add("user", fold.study["owner_id"], "owner")
    for bucket in fold.buckets.values():
        if StudyAccessFold.bucket_state(bucket, t) != "active":
            continue
        if not parent_holds(fold, directory, bucket, t):
            continue
        grant = {
            "bucket_id": bucket["bucket_id"],
            "access_level": bucket["access_level"],
            "valid_until": bucket["valid_until"],
            "granted_at": bucket["granted_at"],
            "granted_by": bucket["sender_id"],
            "two_factor": bucket["two_factor"],
        }
        for r in bucket["recipients"].values():
            if r["revoked_at"]:
                continue
            if r["kind"] == "group":
                add("group", r["recipient_id"], "group", **grant)
                for user in directory.group_members(r["recipient_id"]):
                    add("user", user, "group", through=r["recipient_id"], **grant)
            elif r["kind"] == "department":
                add("department", r["recipient_id"], "grant", **grant)
                for user in directory.department_members(r["recipient_id"]):
                    add("user", user, "grant", through=r["recipient_id"], **grant)
            elif r.get("user_id") and r.get("accepted_at") and r["accepted_at"] <= t:
                add("user", r["user_id"], "grant", through=r["recipient_id"], **grant)
            else:
                add("user", r["recipient_id"], "grant", **grant)
    for btg in fold.break_the_glass:
        if (
            btg["at"] <= t
            and (btg["valid_until"] is None or t < btg["valid_until"])
            and not glass_stopped(fold, directory, btg["user_id"], t)
        ):
            add(
                "user",
                btg["user_id"],
                "break_the_glass",
                reason=btg["reason"],
                granted_at=btg["at"],
                valid_until=btg["valid_until"],
            )
    for ref in fold.references.values():
        if StudyAccessFold.reference_state(ref, t) == "active":
            add(
                "patient",
                f"ref:{ref['reference_number']}",
                "reference_number",
                reference_number=ref["reference_number"],
                granted_at=ref["issued_at"],
                valid_until=ref["valid_to"],
            )
    return rows
