"""Unit tests of who reads the Access tab and the patient's openings (pure rules, no I/O)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from studyshare.audit.domain import rules
from studyshare.audit.domain.access import Directory, shown_to
from studyshare.audit.domain.patient import openings
from studyshare.contracts.tokens import AccessClaims

NOW = int(time.time())


def claims(sub: str, *roles: str, kind: str = "user", **more) -> AccessClaims:
    return AccessClaims(sub=sub, kind=kind, roles=roles, iat=NOW, exp=NOW + 60, **more)


def view(c: AccessClaims) -> str:
    return rules.access_view(c, "1.2.3", "dep_a", "usr_owner", ["usr_sender", None])


def test_each_reader_gets_their_view_of_the_access_tab():
    assert view(claims("x", "auditor")) == "full"
    assert view(claims("x", "service_desk")) == "full"
    assert view(claims("x", "department_admin", admin_of=("dep_a",))) == "full"
    assert view(claims("usr_owner", "physician")) == "owner"
    assert view(claims("x", "department_staff", department_ids=("dep_a",))) == "department"
    assert view(claims("usr_sender", "physician")) == "sender"


@pytest.mark.parametrize(
    "reader",
    [
        claims("usr_recipient", "physician"),  # a recipient who is not a sender
        claims("x", "department_staff", department_ids=("dep_b",)),  # another department
        claims("pat_r1", kind="patient", study_uid="1.2.3", reference_id="r1"),
    ],
)
def test_anyone_else_is_refused_the_access_tab(reader):
    with pytest.raises(rules.NotAmongThoseWhoShare):
        view(reader)


def test_another_departments_admin_is_told_of_the_study_as_of_an_unknown_one():
    with pytest.raises(rules.StudyNotInAuditLog):
        view(claims("x", "department_admin", admin_of=("dep_b",)))


def test_only_a_patient_token_reads_its_own_study_s_openings():
    patient = claims("pat_r1", kind="patient", study_uid="1.2.3", reference_id="r1")
    assert rules.check_patient(patient) == "1.2.3"
    for other in (claims("x", "auditor"), claims("pat_r2", kind="patient")):
        with pytest.raises(rules.PatientTokenOnly):
            rules.check_patient(other)


TAB = {
    "users": [
        {"recipient_id": "a", "granted_by": "usr_sender"},
        {"recipient_id": "b", "granted_by": "usr_owner"},
    ],
    "groups": [{"recipient_id": "g", "granted_by": "usr_owner"}],
    "departments": [],
    "buckets": [{"sender_id": "usr_sender"}, {"sender_id": "usr_owner"}],
    "break_the_glass": [{"user_id": "z"}],
    "transfers": [{}],
    "rsw": [],
    "downloads": [{}],
    "reference_numbers": [{"reference_id": "r1"}],
}


def test_a_sender_sees_their_own_shares_the_owner_every_grant_but_no_reference_number():
    sender = shown_to(TAB, "sender", "usr_sender")
    assert [u["recipient_id"] for u in sender["users"]] == ["a"]
    assert sender["groups"] == [] and sender["buckets"] == [{"sender_id": "usr_sender"}]
    assert sender["break_the_glass"] == sender["reference_numbers"] == sender["downloads"] == []
    owner = shown_to(TAB, "owner", "usr_owner")
    assert len(owner["users"]) == 2 and len(owner["buckets"]) == 2
    assert owner["break_the_glass"] and owner["reference_numbers"] == []
    assert shown_to(TAB, "full", "x")["reference_numbers"] == TAB["reference_numbers"]


def entry(minute: int, event_type: str, **payload) -> dict:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return {"occurred_at": at, "event_type": event_type, "payload": payload, "stream": "s"}


def test_openings_name_who_opened_the_study_how_and_never_another_study():
    directory = Directory()
    directory.names.update(usr_a="Ann Peeters", dep_a="Radiology A", grp="Practice")
    directory.departments["usr_a"] = {"dep_a"}
    rows = openings(
        [
            entry(3, "StudyDownloaded", study_uid="1.2.3", via="grant", user_id="usr_a"),
            entry(
                1,
                "StudyAccessed",
                study_uid="1.2.3",
                action="view",
                via="group",
                user_id="usr_a",
                group_id="grp",
                count=2,
            ),
            entry(
                2, "StudyAccessed", study_uid="9.9.9", action="view", via="grant", user_id="usr_a"
            ),
            entry(
                4,
                "StudyAccessed",
                study_uid="1.2.3",
                action="view",
                via="reference_number",
                reference_id="refidofr1",
            ),
            entry(
                5,
                "BreakTheGlassUsed",
                study_uid="1.2.3",
                user_id="usr_x",
                department_id="dep_a",
                reason="secret reason",
            ),
            entry(6, "ReportUpdated", study_uid="1.2.3"),
        ],
        "1.2.3",
        directory,
    )
    assert [(r["kind"], r["via"]) for r in rows] == [
        ("view", "group"),
        ("download", "grant"),
        ("view", "reference_number"),
        ("break_the_glass", "break_the_glass"),
    ]
    assert rows[0]["user_name"] == "Ann Peeters" and rows[0]["group_name"] == "Practice"
    assert rows[0]["department_names"] == ["Radiology A"] and rows[0]["count"] == 2
    assert rows[2]["by_patient"] and rows[2]["user_name"] is None
    assert rows[3]["department_names"] == ["Radiology A"]
    assert "secret reason" not in str(rows) and "refidofr1" not in str(rows)
