"""Who opened my study: the patient's right of access (GDPR art. 15), from the study logging.

Pure: the caller hands over the entries of the one study the patient's token opens, and a
`Directory` that names the users, groups and departments involved. A row says when, who (a
physician's name, their department's name, or "you" for a reference-number login), and the kind
of access; it never shows a reference number (nor its reference id), a reason given for
break-the-glass, nor anything of another study.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from studyshare.audit.domain.access import Directory, chronological, when

#: the registrations of an access to the study a patient is told about
OPENING_TYPES = ("StudyAccessed", "StudyDownloaded", "BreakTheGlassUsed", "StudyForwarded")


def people_of(entries: Iterable[Mapping[str, Any]]) -> tuple[set[str], set[str], set[str]]:
    """The users, groups and departments the openings name (to fetch their names)."""
    users, groups, departments = set(), set(), set()
    for e in entries:
        p = e["payload"]
        if e["event_type"] not in OPENING_TYPES:
            continue
        if user := p.get("user_id") or p.get("requested_by"):
            users.add(user)
        if p.get("group_id"):
            groups.add(p["group_id"])
        if p.get("department_id"):
            departments.add(p["department_id"])
    return users, groups, departments


def openings(
    entries: Iterable[Mapping[str, Any]], study_uid: str, directory: Directory
) -> list[dict[str, Any]]:
    """The registrations of access to `study_uid`, oldest first, as the patient sees them."""
    rows: list[dict[str, Any]] = []
    for e in chronological(entries):
        p, t = e["payload"], e["event_type"]
        if t not in OPENING_TYPES or p.get("study_uid") != study_uid:
            continue
        if t == "StudyAccessed":
            kind, via = str(p.get("action")), p.get("via")
        elif t == "StudyDownloaded":
            kind, via = "download", p.get("via")
        elif t == "BreakTheGlassUsed":
            kind, via = "break_the_glass", "break_the_glass"
        else:
            kind, via = "forward", "transfer"
        user = p.get("user_id") or p.get("requested_by")
        departments = sorted(directory.departments.get(user, ())) if user else []
        if p.get("department_id"):
            departments = [p["department_id"]]
        rows.append(
            {
                "at": when(e["occurred_at"]),
                "kind": kind,
                "via": via,
                "by_patient": via == "reference_number",
                "user_name": directory.names.get(user) if user else None,
                "department_names": [directory.names.get(d) or d for d in departments],
                "group_name": directory.names.get(p["group_id"]) if p.get("group_id") else None,
                "count": int(p.get("count") or 1),
            }
        )
    return rows
