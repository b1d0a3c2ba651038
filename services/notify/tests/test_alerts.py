"""Issue point 4: alerts (bucket locked, break-the-glass) to the sending department's admins and
the service desk; group-membership confirmation reminders; pending registrations."""

from __future__ import annotations

from datetime import UTC, date, datetime

from studyshare.contracts.events.identity import (
    DepartmentAdminAssigned,
    DepartmentCreated,
    GroupCompositionReported,
    GroupCreated,
    GroupMembershipConfirmationDue,
    UserDeactivated,
    UserRolesChanged,
)
from studyshare.contracts.events.share import BucketLocked, RecipientRef, StudyShared
from studyshare.contracts.events.study import BreakTheGlassUsed, StudyReceived
from studyshare.notify.service_layer.sender import Sender

from .conftest import apply, drain, user_registered

STUDY = "1.2.826.0.1.3680043.8.498.9"


def staff(events) -> list:
    return [
        events(
            DepartmentCreated(department_id="dep_rad", name="Radiologie AZ Noord", created_by="x"),
            "dep_rad",
        ),
        events(user_registered("usr_adm1", "Ada", "Admin", admin_of=("dep_rad",)), "usr_adm1"),
        events(user_registered("usr_adm2", "Bert", "Beheer", language="nl"), "usr_adm2"),
        events(
            DepartmentAdminAssigned(department_id="dep_rad", user_id="usr_adm2", assigned_by="x"),
            "dep_rad",
        ),
        events(user_registered("usr_other", "Olga", "Other", admin_of=("dep_other",)), "usr_other"),
        events(user_registered("usr_gone", "Gus", "Gone", admin_of=("dep_rad",)), "usr_gone"),
        events(UserDeactivated(user_id="usr_gone", deactivated_by="x"), "usr_gone"),
        events(user_registered("usr_desk", "Dirk", "Desk"), "usr_desk"),
        events(
            UserRolesChanged(
                user_id="usr_desk",
                roles=("service_desk",),
                department_ids=(),
                admin_of=(),
                changed_by="x",
            ),
            "usr_desk",
        ),
        events(user_registered("usr_rcp", "Rita", "Recipient"), "usr_rcp"),
        events(user_registered("usr_snd", "Sam", "Sender"), "usr_snd"),
    ]


EXPECTED_ALERTED = [
    "desk@studyshare.example",
    "usr_adm1@example.org",
    "usr_adm2@example.org",
    "usr_desk@example.org",
]


def addresses(catcher) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in catcher.messages())


async def test_bucket_locked_alerts_the_sending_departments_admins_and_the_service_desk(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    locked = events(
        BucketLocked(
            bucket_id="bkt_9",
            recipient_id="usr_rcp",
            failed_attempts=5,
            sending_department_id="dep_rad",
        ),
        "bkt_9",
    )
    await apply(mongo_db, [*staff(events), locked])
    await drain(Sender(mongo_db, settings))

    assert addresses(smtp_catcher) == EXPECTED_ALERTED
    [ada] = smtp_catcher.to("usr_adm1@example.org")
    assert ada["Subject"] == ("Security alert: share bkt_9 locked after 5 wrong one-time passwords")
    text = ada.get_body(("plain",)).get_content()
    assert "Rita Recipient entered a wrong one-time password 5 times in a row" in text
    assert "Radiologie AZ Noord" in text
    assert "https://studyshare.example/shares/bkt_9" in text
    [bert] = smtp_catcher.to("usr_adm2@example.org")
    assert bert["Content-Language"] == "nl", "an alert speaks its reader's language"
    assert bert["Subject"].startswith("Beveiligingsmelding: deling bkt_9 vergrendeld")


async def test_bucket_locked_without_department_uses_the_buckets_sending_department(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    share = events(
        StudyShared(
            bucket_id="bkt_7",
            study_uids=(STUDY,),
            recipients=(RecipientRef(recipient_id="usr_rcp", kind="user"),),
            sender_id="usr_snd",
            sending_department_id="dep_rad",
            access_level="images_report_read",
            reason="r",
            language="en",
            send_mail=False,
        ),
        "bkt_7",
    )
    locked = events(
        BucketLocked(bucket_id="bkt_7", recipient_id="usr_rcp", failed_attempts=5), "bkt_7"
    )
    await apply(mongo_db, [*staff(events), share, locked])
    await drain(Sender(mongo_db, settings))

    assert addresses(smtp_catcher) == EXPECTED_ALERTED


async def test_break_the_glass_alerts_admins_and_desk_with_the_reason_but_no_patient_data(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    study = events(
        StudyReceived(
            study_uid=STUDY,
            department_id="dep_rad",
            patient_initials="Q.Z.",
            description="CT brain",
            study_date=date(2026, 5, 1),
        ),
        STUDY,
    )
    glass = events(
        BreakTheGlassUsed(
            study_uid=STUDY,
            user_id="usr_snd",
            reason="patient unconscious at the emergency department",
            valid_until=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        ),
        "btg_1",
    )
    await apply(mongo_db, [*staff(events), study, glass])
    await drain(Sender(mongo_db, settings))

    assert addresses(smtp_catcher) == EXPECTED_ALERTED
    [mail] = smtp_catcher.to("usr_adm1@example.org")
    assert mail["Subject"] == "Security alert: break-the-glass access by Sam Sender"
    text = mail.get_body(("plain",)).get_content()
    assert "Reason given: patient unconscious at the emergency department" in text
    assert "Exam: CT brain" in text
    assert "Q.Z." not in mail.as_string()


async def test_group_membership_confirmation_reminder_goes_to_the_member_in_their_language(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    people = [
        events(user_registered("usr_m", "Mia", "Member", language="fr"), "usr_m"),
        events(
            GroupCreated(
                group_id="grp_5",
                name="Cabinet Sud",
                primary_contact_id="usr_m",
                member_ids=("usr_m",),
                created_by="x",
            ),
            "grp_5",
        ),
    ]
    due = events(
        GroupMembershipConfirmationDue(
            group_id="grp_5", user_id="usr_m", due_since=datetime.now(UTC)
        ),
        "grp_5",
    )
    await apply(mongo_db, [*people, due])
    await drain(Sender(mongo_db, settings))

    [mail] = smtp_catcher.messages()
    assert mail["To"].addresses[0].addr_spec == "usr_m@example.org"
    assert mail["Subject"] == "Veuillez confirmer votre appartenance à Cabinet Sud"
    assert (
        "https://studyshare.example/group-confirmations" in mail.get_body(("plain",)).get_content()
    )


async def test_a_pending_registration_is_announced_to_the_service_desk(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    pending = events(
        user_registered("usr_new", "Nina", "New", pending_approval=True, profession="dentist"),
        "usr_new",
    )
    await apply(mongo_db, [*staff(events), pending])
    await drain(Sender(mongo_db, settings))

    assert addresses(smtp_catcher) == ["desk@studyshare.example", "usr_desk@example.org"]
    [mail] = smtp_catcher.to("desk@studyshare.example")
    assert "Nina New (usr_new, dentist) registered on StudyShare" in (
        mail.get_body(("plain",)).get_content()
    )


async def test_an_admin_assignment_seen_before_the_registration_is_kept(
    mongo_db, events, notify_settings, smtp_catcher
):
    """Department and user are different aggregates: their events may arrive in any order."""
    settings = notify_settings(service_desk_email=None)
    assigned = events(
        DepartmentAdminAssigned(department_id="dep_rad", user_id="usr_late", assigned_by="x"),
        "dep_rad",
    )
    registered = events(user_registered("usr_late", "Lou", "Late"), "usr_late")
    locked = events(
        BucketLocked(
            bucket_id="bkt_1", recipient_id="r", failed_attempts=5, sending_department_id="dep_rad"
        ),
        "bkt_1",
    )
    await apply(mongo_db, [assigned, registered, locked])
    await drain(Sender(mongo_db, settings))

    assert addresses(smtp_catcher) == ["usr_late@example.org"]


async def test_a_reminder_is_sent_once_per_due_date_and_not_after_confirming(
    mongo_db, events, notify_settings, smtp_catcher
):
    from datetime import timedelta

    from studyshare.contracts.events.identity import GroupMembershipConfirmed

    settings = notify_settings()
    due_since = datetime(2026, 11, 1, tzinfo=UTC)
    people = [
        events(user_registered("usr_m", "Mia", "Member"), "usr_m"),
        events(user_registered("usr_n", "Noor", "Member"), "usr_n"),
        events(
            GroupCreated(
                group_id="grp_5",
                name="Cabinet Sud",
                primary_contact_id="usr_m",
                member_ids=("usr_m", "usr_n"),
                created_by="x",
            ),
            "grp_5",
        ),
    ]
    due = [
        events(
            GroupMembershipConfirmationDue(group_id="grp_5", user_id=u, due_since=due_since),
            "grp_5",
        )
        for u in ("usr_m", "usr_m", "usr_n")
    ]
    confirmed = events(
        GroupMembershipConfirmed(
            group_id="grp_5", user_id="usr_n", confirmed_until=due_since + timedelta(days=91)
        ),
        "grp_5",
    )
    await apply(mongo_db, [*people, *due, confirmed])
    await drain(Sender(mongo_db, settings))

    assert addresses(smtp_catcher) == ["usr_m@example.org"]
    skipped = await mongo_db.deliveries.find({"state": "skipped"}).to_list(None)
    assert sorted(d["reason"] for d in skipped) == [
        "already reminded of this due date",
        "the membership was confirmed meanwhile",
    ]


async def test_a_wrong_composition_goes_to_the_groups_admins_or_else_the_service_desk(
    mongo_db, events, notify_settings, smtp_catcher
):
    """Issue 16, point 5 (manual L13): the admins named by the report, in their language; a
    report naming none (the reporter is the only admin) goes to the service desk."""
    settings = notify_settings()
    group = events(
        GroupCreated(
            group_id="grp_7",
            name="Praktijk Oost",
            primary_contact_id="usr_adm2",
            member_ids=("usr_adm2", "usr_rcp"),
            created_by="x",
        ),
        "grp_7",
    )
    to_admin = events(
        GroupCompositionReported(
            group_id="grp_7", reported_by="usr_rcp", remark="Dr Nys left", admin_ids=("usr_adm2",)
        ),
        "grp_7",
    )
    await apply(mongo_db, [*staff(events), group, to_admin])
    await drain(Sender(mongo_db, settings))
    [mail] = smtp_catcher.messages()
    assert mail["To"].addresses[0].addr_spec == "usr_adm2@example.org"
    assert mail["Subject"] == "De samenstelling van Praktijk Oost werd als foutief gemeld"
    text = mail.get_body(("plain",)).get_content()
    assert "Rita Recipient" in text and "Dr Nys left" in text

    to_desk = events(
        GroupCompositionReported(group_id="grp_7", reported_by="usr_adm2", remark="Gone"),
        "grp_7",
    )
    await apply(mongo_db, [to_desk])
    await drain(Sender(mongo_db, settings))
    desk = sorted(
        m["To"].addresses[0].addr_spec for m in smtp_catcher.messages() if "Gone" in str(m)
    )
    assert desk == ["desk@studyshare.example", "usr_desk@example.org"]


async def test_an_admin_removed_stays_removed_whatever_the_order_of_user_and_department(
    mongo_db, events, notify_settings, smtp_catcher
):
    """A rebuild reads the user's partition before the department's: the roles change that
    ended the admin came first, and the department's assignment, read next, made them admin
    again (the removal was not projected); the live directory said otherwise."""
    from studyshare.contracts.events.identity import DepartmentAdminRemoved

    settings = notify_settings(service_desk_email=None)
    registered = events(user_registered("usr_was", "Wim", "Was", admin_of=("dep_rad",)), "usr_was")
    demoted = events(
        UserRolesChanged(
            user_id="usr_was", roles=("physician",), department_ids=(), admin_of=(), changed_by="x"
        ),
        "usr_was",
    )
    assigned = events(
        DepartmentAdminAssigned(department_id="dep_rad", user_id="usr_was", assigned_by="x"),
        "dep_rad",
    )
    removed = events(
        DepartmentAdminRemoved(department_id="dep_rad", user_id="usr_was", removed_by="x"),
        "dep_rad",
    )
    locked = events(
        BucketLocked(
            bucket_id="bkt_1", recipient_id="r", failed_attempts=5, sending_department_id="dep_rad"
        ),
        "bkt_1",
    )
    await apply(mongo_db, [registered, demoted, assigned, removed, locked])
    await drain(Sender(mongo_db, settings))

    assert addresses(smtp_catcher) == [], "no former admin is alerted"
