"""Issue 4, points 1, 2 and 7: sharing, its parameters and rules, the confirmation, share
again, remembered preferences, favourites; every refusal names its rule and stores nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from studyshare.contracts.events.identity import DepartmentCreated
from studyshare.contracts.events.study import StudyReceived

from .conftest import STUDY_A, STUDY_B, STUDY_C, policy, share_body

STUDY_D = "1.2.826.0.1.4"


async def test_share_several_studies_with_users_group_department_and_email_in_one_bucket(env):
    out = await env.share(
        study_uids=[STUDY_A, STUDY_C],
        recipients=[
            {"kind": "user", "id": "usr_r1"},
            {"kind": "group", "id": "grp_1"},
            {"kind": "department", "id": "dep_pacs"},
            {"kind": "email", "email": "New.Doctor@example.org", "language": "fr"},
        ],
        access_level="images_report_write",
        message="Please look at the left lung",
        urgent=True,
        label={"text": "oncology", "scope": "group"},
    )
    bucket_id = out["bucket_id"]
    assert bucket_id.startswith("bkt_")
    [event] = await env.events(aggregate_id=bucket_id)
    assert event["event_type"] == "StudyShared"
    p = event["payload"]
    assert p["study_uids"] == [STUDY_A, STUDY_C]
    assert [(r["kind"], r["recipient_id"]) for r in p["recipients"]] == [
        ("user", "usr_r1"),
        ("group", "grp_1"),
        ("department", "dep_pacs"),
        ("email", "email:new.doctor@example.org"),
    ]
    assert p["sending_department_id"] == "dep_1"
    assert p["reason"] == "second opinion"
    assert p["urgent"] is True and p["message"] == "Please look at the left lung"


async def test_images_only_not_allowed_for_user_but_for_a_department(env):
    refused = await env.share(access_level="images", expect=422)
    assert refused["rule"] == "ImagesOnlyNotAllowedForUser"
    assert await env.count() == 0
    ok = await env.share(
        access_level="images", recipients=[{"kind": "department", "id": "dep_pacs"}]
    )
    assert ok["confirmation"]["report_access"] == "none"


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"reason": "  "}, "ReasonRequired"),
        ({"patient_agreed": False}, "PatientConsentRequired"),
        ({"study_uids": []}, "NoStudies"),
        ({"recipients": []}, "NoRecipients"),
        ({"recipients": [{"kind": "user", "id": "usr_ghost"}]}, "RecipientNotKnown"),
        ({"study_uids": ["9.9.9"]}, "StudyNotKnown"),
        ({"label": {"text": "x", "scope": "group"}}, "LabelScopeNeedsGroupRecipient"),
        ({"add_to_favorites": ["usr_r2"]}, "FavoriteNotARecipient"),
        ({"valid_until": "2001-01-01T00:00:00Z"}, "ValidUntilInPast"),
        ({"recipients": [{"kind": "email"}]}, "InvalidRequest"),
    ],
)
async def test_every_refusal_names_its_rule_and_stores_nothing(env, body, rule):
    refused = await env.share(expect=422, **body)
    assert refused["rule"] == rule
    assert refused["detail"]
    assert await env.count() == 0
    assert await env.db.buckets_view.count_documents({}) == 0


async def test_a_study_of_another_department_is_refused_as_one_not_received(env):
    """Known or not, a study the sender has no way to share is told alike: no oracle."""
    refused = await env.share(sender="usr_outsider", expect=422)
    never = await env.share(sender="usr_outsider", study_uids=["9.9.9"], expect=422)
    assert refused["rule"] == never["rule"] == "StudyNotKnown"
    assert refused["detail"].replace(STUDY_A, "9.9.9") == never["detail"]
    assert await env.count() == 0


async def test_study_owner_may_share_their_study(env):
    await env.share(sender="usr_owner")


async def test_mail_language_is_the_majority_language_else_the_first_and_overridable(env):
    majority = await env.share(
        recipients=[{"kind": "user", "id": u} for u in ("usr_r1", "usr_r2", "usr_r3")]
    )
    assert majority["confirmation"]["language"] == "fr"
    first = await env.share(recipients=[{"kind": "user", "id": u} for u in ("usr_r1", "usr_r2")])
    assert first["confirmation"]["language"] == "nl"
    chosen = await env.share(language="de")
    assert chosen["confirmation"]["language"] == "de"


async def test_a_groups_or_departments_own_language_counts_when_the_client_sends_none(env):
    """Issue 16, point 9: the tie rule is the first recipient's language, and a group or a
    department recipient speaks its own language unless the client names one for it."""
    from studyshare.contracts.events.identity import DepartmentCreated, GroupCreated

    await env.seed(
        GroupCreated(
            group_id="grp_fr",
            name="Cabinet Sud",
            primary_contact_id="usr_r2",
            created_by="usr_admin",
            language="fr",
        ),
        DepartmentCreated(
            department_id="dep_de", name="Radiologie Eupen", created_by="t", language="de"
        ),
    )
    group, department = {"kind": "group", "id": "grp_fr"}, {"kind": "department", "id": "dep_de"}
    # a tie (one fr, one de, one nl): the first recipient's language, the group's own
    tie = await env.share(recipients=[group, department, {"kind": "user", "id": "usr_r1"}])
    assert tie["confirmation"]["language"] == "fr"
    tie = await env.share(recipients=[department, group, {"kind": "user", "id": "usr_r1"}])
    assert tie["confirmation"]["language"] == "de"
    # two of three speak French once the group's own language counts
    majority = await env.share(
        recipients=[{"kind": "user", "id": "usr_r1"}, group, {"kind": "user", "id": "usr_r2"}]
    )
    assert majority["confirmation"]["language"] == "fr"
    # two against two is no majority: the first recipient's (nl), literally
    even = await env.share(
        recipients=[
            {"kind": "user", "id": "usr_r1"},
            group,
            {"kind": "user", "id": "usr_r2"},
            {"kind": "user", "id": "usr_sender"},
        ]
    )
    assert even["confirmation"]["language"] == "nl"
    # what the client says for a group wins over the group's own
    told = await env.share(recipients=[{**group, "language": "nl"}, department])
    assert told["confirmation"]["language"] == "nl"
    [*_, event] = await env.events(event_type="StudyShared")
    assert [r["language"] for r in event["payload"]["recipients"]] == ["nl", "de"]


async def test_validity_defaults_to_one_calendar_month_without_department_policy(env):
    from datetime import UTC, datetime

    env.clock.now = datetime(2027, 1, 31, 10, 0, 0, tzinfo=UTC)
    out = await env.share()
    until = out["confirmation"]["valid_until"]
    [event] = await env.events(event_type="StudyShared")
    assert event["payload"]["valid_until"] == until
    # 31 January + one month: the last day of February, 28 days later (not 30)
    assert datetime.fromisoformat(until) == datetime(2027, 2, 28, 10, 0, 0, tzinfo=UTC)


async def test_a_date_without_a_time_ends_at_the_end_of_that_day_in_the_departments_zone(env):
    from datetime import UTC, datetime

    env.clock.now = datetime(2027, 1, 31, 10, 0, 0, tzinfo=UTC)
    # dep_1 sets no zone: its country's (Belgium, CET in February)
    out = await env.share(valid_until="2027-02-10")
    assert datetime.fromisoformat(out["confirmation"]["valid_until"]) == datetime(
        2027, 2, 10, 22, 59, 59, tzinfo=UTC
    )
    assert "Valid until: 10/02/2027 23:59 (Europe/Brussels)" in out["confirmation_text"]
    await env.seed(policy(time_zone="America/New_York"))
    out = await env.share(valid_until="2027-02-10")
    assert datetime.fromisoformat(out["confirmation"]["valid_until"]) == datetime(
        2027, 2, 11, 4, 59, 59, tzinfo=UTC
    )
    assert "Valid until: 10/02/2027 23:59 (America/New_York)" in out["confirmation_text"]
    # a time without its offset is refused, not guessed (nor taken for a date)
    before = await env.count()
    for ambiguous in ("2027-02-10T00:00", "2027-02-10T18:00", "10/02/2027"):
        refused = await env.share(valid_until=ambiguous, expect=422)
        assert refused["status"] == 422
    assert await env.count() == before


async def test_department_default_maximum_and_unlimited_are_enforced(env):
    await env.seed(policy(default_validity_days=7, max_validity_days=14, unlimited_allowed=False))
    from datetime import datetime

    out = await env.share()
    delta = datetime.fromisoformat(out["confirmation"]["valid_until"]) - env.clock.now
    assert timedelta(days=6, hours=23) < delta <= timedelta(days=7)
    before = await env.count()
    too_long = (env.clock.now + timedelta(days=20)).isoformat()
    refused = await env.share(valid_until=too_long, expect=422)
    assert refused["rule"] == "ValidityBeyondDepartmentMaximum"
    refused = await env.share(unlimited=True, expect=422)
    assert refused["rule"] == "UnlimitedAccessNotAllowed"
    assert await env.count() == before
    fine = (env.clock.now + timedelta(days=10)).isoformat()
    await env.share(valid_until=fine)


async def test_unlimited_where_the_department_allows_it(env):
    out = await env.share(unlimited=True)
    assert out["confirmation"]["unlimited"] is True
    assert out["confirmation"]["valid_until"] is None
    assert "Valid until: unlimited" in out["confirmation_text"]


async def test_hipaa_confirmation_required_where_the_department_requires_it(env):
    await env.seed(policy(hipaa_confirmation_required=True))
    refused = await env.share(expect=422)
    assert refused["rule"] == "HipaaConfirmationRequired"
    assert await env.count() == 0
    await env.share(hipaa_confirmed=True)


async def test_anonymized_share_never_opens_the_report_and_says_so(env):
    out = await env.share(anonymize=True, access_level="images_report_write")
    c = out["confirmation"]
    assert c["access_level"] == "images_report_write"
    assert c["report_access"] == "none"
    assert c["studies"][0]["patient_initials"] == "Anonymous"
    assert "report is never accessible" in out["confirmation_text"]


async def test_an_anonymized_shares_confirmation_names_the_study_as_its_recipients_see_it(env):
    """The confirmation's text is copied into the sender's own mail to the recipients: it once
    named the real study ('Anonymous | CT thorax | 2026-06-15 (its real UID)'). The
    confirmation itself is the sender's, with the real study."""
    from datetime import date

    from studyshare.contracts.events.study import StudyReceived

    await env.seed(
        StudyReceived(
            study_uid="1.2.826.0.1.77",
            department_id="dep_1",
            owner_id="usr_owner",
            patient_initials="J.J.",
            description="CT thorax Jansen",
            study_date=date(2026, 6, 15),
        )
    )
    out = await env.share(anonymize=True, study_uids=["1.2.826.0.1.77"])
    text = out["confirmation_text"]
    for real in ("1.2.826.0.1.77", "Jansen", "2026-06-15", "J.J."):
        assert real not in text, real
    [shown] = [line for line in text.splitlines() if line.startswith("  - Anonymous")]
    assert "(2.25." in shown and "| 20" in shown, "the UID and date the recipients see"
    assert out["confirmation"]["studies"][0]["study_uid"] == "1.2.826.0.1.77", "the sender's"


async def test_share_all_exams_uploaded_together(env):
    out = await env.share(include_uploaded_together=True)
    assert [s["study_uid"] for s in out["confirmation"]["studies"]] == [STUDY_A, STUDY_B]


async def test_uploaded_together_tells_an_outsider_nothing_of_a_study_or_its_neighbours(env):
    """The neighbours were once added before any check, and the refusal listed them: a
    known study answered with its neighbours' UIDs, an unknown one with itself alone."""
    known = await env.share(sender="usr_outsider", include_uploaded_together=True, expect=422)
    never = await env.share(
        sender="usr_outsider", study_uids=["9.9.9"], include_uploaded_together=True, expect=422
    )
    assert known["rule"] == never["rule"] == "StudyNotKnown"
    assert known["detail"].replace(STUDY_A, "9.9.9") == never["detail"]
    assert STUDY_B not in known["detail"]
    assert await env.count() == 0


async def test_uploaded_together_adds_only_the_neighbours_the_sender_may_share(env):
    """A study of another department uploaded in the same batch is left out, not a reason
    to refuse the share (nor named in a refusal)."""
    await env.seed(
        DepartmentCreated(department_id="dep_2", name="Radiology Gent", created_by="t"),
        StudyReceived(
            study_uid=STUDY_D, department_id="dep_2", upload_batch_id="batch_cd", description="X"
        ),
    )
    out = await env.share(include_uploaded_together=True)
    assert [s["study_uid"] for s in out["confirmation"]["studies"]] == [STUDY_A, STUDY_B]


async def test_a_department_member_without_a_study_role_may_not_share_its_studies(env):
    """The access policy opens a department's studies to its members who work with studies
    (physician, staff, admin); an auditor of the department once shared them, to anyone,
    themselves included, with download and report."""
    body = share_body(
        recipients=[{"kind": "user", "id": "usr_sender"}],
        access_level="images_report_write",
        allow_download=True,
    )
    auditor = env.as_("usr_sender", "auditor")
    refused = await env.client.post("/api/shares", json=body, headers=auditor)
    assert refused.status_code == 422, refused.text
    assert refused.json()["rule"] == "StudyNotKnown"
    assert await env.count() == 0
    physician = await env.client.post("/api/shares", json=body, headers=env.as_("usr_sender"))
    assert physician.status_code == 201, physician.text


async def test_confirmation_is_structured_and_ready_to_copy_text(env):
    out = await env.share(
        recipients=[{"kind": "user", "id": "usr_r1"}, {"kind": "group", "id": "grp_1"}],
        allow_download=True,
        message="see series 3",
    )
    c = out["confirmation"]
    assert c["bucket_id"] == out["bucket_id"]
    assert c["sender"] == {"id": "usr_sender", "name": "Dr Sender"}
    assert c["studies"] == [
        {
            "study_uid": STUDY_A,
            "description": "CT thorax",
            "study_date": None,
            "patient_initials": "J.D.",
        }
    ]
    assert [r["name"] for r in c["recipients"]] == ["Dr R1", "Group practice Zuid"]
    text = out["confirmation_text"]
    for expected in (
        "CT thorax",
        "Dr R1",
        "Group practice Zuid",
        "images and read access",
        "Valid until:",
        "download allowed",
        "see series 3",
    ):
        assert expected in text
    assert "second opinion" not in text  # the reason is never shown


async def test_share_again_shares_the_same_studies_with_new_recipients(env):
    first = await env.share(study_uids=[STUDY_A, STUDY_B], allow_download=True)
    again = await env.client.post(
        f"/api/shares/{first['bucket_id']}/share-again",
        json={"recipients": [{"kind": "user", "id": "usr_r2"}]},
        headers=env.as_("usr_sender"),
    )
    assert again.status_code == 201, again.text
    c = again.json()["confirmation"]
    assert again.json()["bucket_id"] != first["bucket_id"]
    assert [s["study_uid"] for s in c["studies"]] == [STUDY_A, STUDY_B]
    assert [r["id"] for r in c["recipients"]] == ["usr_r2"]
    assert c["allow_download"] is True
    other = await env.client.post(
        f"/api/shares/{first['bucket_id']}/share-again",
        json={"recipients": [{"kind": "user", "id": "usr_r3"}]},
        headers=env.as_("usr_r1"),
    )
    assert other.status_code == 403 and other.json()["rule"] == "NotTheSender"


async def test_last_two_factor_and_send_mail_choices_become_the_defaults(env):
    prefs = await env.client.get("/api/share-preferences", headers=env.as_("usr_sender"))
    assert prefs.json() == {"two_factor": False, "send_mail": True}
    await env.share(two_factor=True, send_mail=False)
    prefs = await env.client.get("/api/share-preferences", headers=env.as_("usr_sender"))
    assert prefs.json() == {"two_factor": True, "send_mail": False}
    out = await env.share()  # neither given: the remembered choices apply
    assert out["confirmation"]["two_factor"] is True
    assert out["confirmation"]["send_mail"] is False
    assert await env.count(event_type="SharePreferencesRemembered") == 1


async def test_favorites_added_once_the_share_completes_listed_and_removed(env):
    refused = await env.share(patient_agreed=False, add_to_favorites=["usr_r1"], expect=422)
    assert refused["rule"] == "PatientConsentRequired"
    favs = await env.client.get("/api/favorites", headers=env.as_("usr_sender"))
    assert favs.json() == []
    out = await env.share(add_to_favorites=["usr_r1"])
    assert out["favorites_added"] == ["fav_user_usr_r1"]
    await env.share(add_to_favorites=["usr_r1"])  # already a favourite: added once
    assert await env.count(event_type="FavoriteAdded") == 1
    added = await env.client.post(
        "/api/favorites", json={"kind": "group", "id": "grp_1"}, headers=env.as_("usr_sender")
    )
    assert added.status_code == 201
    favs = (await env.client.get("/api/favorites", headers=env.as_("usr_sender"))).json()
    assert {f["recipient_id"] for f in favs} == {"usr_r1", "grp_1"}
    gone = await env.client.delete("/api/favorites/fav_user_usr_r1", headers=env.as_("usr_sender"))
    assert gone.status_code == 204
    favs = (await env.client.get("/api/favorites", headers=env.as_("usr_sender"))).json()
    assert [f["recipient_id"] for f in favs] == ["grp_1"]
    missing = await env.client.delete("/api/favorites/fav_nope", headers=env.as_("usr_sender"))
    assert missing.status_code == 404 and missing.json()["rule"] == "FavoriteNotFound"


async def test_reason_is_visible_to_the_sender_never_to_recipients(env):
    out = await env.share()
    mine = await env.client.get(f"/api/shares/{out['bucket_id']}", headers=env.as_("usr_sender"))
    assert mine.json()["reason"] == "second opinion"
    theirs = await env.client.get(f"/api/shares/{out['bucket_id']}", headers=env.as_("usr_r1"))
    assert theirs.status_code == 200 and theirs.json()["reason"] is None
    stranger = await env.client.get(
        f"/api/shares/{out['bucket_id']}", headers=env.as_("usr_outsider")
    )
    assert stranger.status_code == 404


async def test_unauthenticated_requests_are_refused(env):
    response = await env.client.post("/api/shares", json={})
    assert response.status_code == 401


async def test_profile_changes_reach_the_share_language_and_names(env):
    from studyshare.contracts.events.identity import UserProfileChanged

    await env.seed(UserProfileChanged(user_id="usr_r1", language="de", last_name="Peeters"))
    out = await env.share()
    assert out["confirmation"]["language"] == "de"
    assert out["confirmation"]["recipients"][0]["name"] == "Dr Peeters"
