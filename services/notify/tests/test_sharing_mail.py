"""Issue points 1, 2 and 6: the share mail through a real SMTP server, as the manuals describe."""

from __future__ import annotations

from datetime import UTC, date, datetime

from studyshare.contracts.events.identity import (
    DepartmentCreated,
    GroupCreated,
    GroupMemberAdded,
    GroupMemberRemoved,
    UserProfileChanged,
)
from studyshare.contracts.events.share import RecipientRef, StudyShared
from studyshare.contracts.events.study import StudyReceived
from studyshare.contracts.invitations import invitation_token
from studyshare.notify.service_layer.sender import Sender

from .conftest import apply, user_registered

STUDY = "1.2.826.0.1.3680043.8.498.1"
STUDY_2 = "1.2.826.0.1.3680043.8.498.2"


def world(events) -> list:
    return [
        events(
            user_registered("usr_sender", "Jan", "Janssens", department_ids=("dep_rad",)),
            "usr_sender",
        ),
        events(user_registered("usr_peeters", "An", "Peeters", language="nl"), "usr_peeters"),
        events(user_registered("usr_dubois", "Marie", "Dubois", language="fr"), "usr_dubois"),
        events(
            DepartmentCreated(
                department_id="dep_rad",
                name="Radiologie AZ Noord",
                email="radiologie@aznoord.example",
                created_by="usr_admin",
            ),
            "dep_rad",
        ),
        events(
            StudyReceived(
                study_uid=STUDY,
                department_id="dep_rad",
                patient_initials="J.D.",
                description="CT thorax",
                study_date=date(2026, 3, 12),
            ),
            STUDY,
        ),
        events(
            StudyReceived(
                study_uid=STUDY_2,
                department_id="dep_rad",
                patient_initials="J.D.",
                description="MR knee",
                study_date=date(2026, 4, 2),
            ),
            STUDY_2,
        ),
    ]


def shared(events, bucket: str, recipients, **fields):
    values = {
        "bucket_id": bucket,
        "study_uids": (STUDY,),
        "recipients": tuple(recipients),
        "sender_id": "usr_sender",
        "sending_department_id": "dep_rad",
        "access_level": "images_report_read",
        "reason": "second opinion on the nodule",
        "language": "en",
        "valid_until": datetime(2027, 1, 31, tzinfo=UTC),
    }
    values.update(fields)
    return events(StudyShared(**values), bucket)


def user(uid: str) -> RecipientRef:
    return RecipientRef(recipient_id=uid, kind="user")


async def test_share_mail_says_who_shared_which_exam_with_a_link_and_the_message(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    share = shared(events, "bkt_1", [user("usr_peeters")], message="Please look at segment 6.")
    await apply(mongo_db, [*world(events), share])

    assert await Sender(mongo_db, settings).run_until_idle() == 1

    [mail] = smtp_catcher.messages()
    assert mail["To"] == "An Peeters <usr_peeters@example.org>"
    assert mail["Subject"] == "Jan Janssens shared an exam with you"
    assert "Urgent" not in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    assert "Jan Janssens (Radiologie AZ Noord) has shared an exam with you" in text
    assert "Patient: J.D." in text
    assert "Exam: CT thorax" in text
    assert "Date of the exam: 12/03/2026" in text
    assert f"https://studyshare.example/studies/{STUDY}?bucket=bkt_1" in text
    assert "Please look at segment 6." in text
    assert "You have access until 31/01/2027." in text
    assert "second opinion" not in text, "the reason for sharing is never shown to the recipient"
    html = mail.get_body(("html",)).get_content()
    assert f'href="https://studyshare.example/studies/{STUDY}?bucket=bkt_1"' in html
    assert mail["Message-ID"].startswith("<ntf_") and mail["Content-Language"] == "en"


async def test_urgent_share_says_so_in_the_subject_in_the_chosen_language(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    shares = [
        shared(events, "bkt_en", [user("usr_peeters")], urgent=True, language="en"),
        shared(events, "bkt_nl", [user("usr_peeters")], urgent=True, language="nl"),
        shared(events, "bkt_fr", [user("usr_peeters")], urgent=True, language="fr"),
        shared(events, "bkt_de", [user("usr_peeters")], urgent=True, language="de"),
    ]
    await apply(mongo_db, [*world(events), *shares])
    await Sender(mongo_db, settings).run_until_idle()

    by_language = {m["Content-Language"]: m for m in smtp_catcher.messages()}
    assert by_language["en"]["Subject"] == "Urgent: Jan Janssens shared an exam with you"
    assert (
        by_language["nl"]["Subject"] == "Dringend: Jan Janssens heeft een onderzoek met u gedeeld"
    )
    assert by_language["fr"]["Subject"] == "Urgent : Jan Janssens a partagé un examen avec vous"
    assert by_language["de"]["Subject"] == (
        "Dringend: Jan Janssens hat eine Untersuchung mit Ihnen geteilt"
    )
    assert (
        "Datum van het onderzoek: 12/03/2026"
        in by_language["nl"].get_body(("plain",)).get_content()
    )
    assert "Date de l'examen : 12/03/2026" in by_language["fr"].get_body(("plain",)).get_content()
    assert (
        "Datum der Untersuchung: 12.03.2026" in by_language["de"].get_body(("plain",)).get_content()
    )
    assert all(m["Importance"] == "high" for m in by_language.values())


async def test_the_mail_language_is_the_share_language_not_the_recipients(
    mongo_db, events, notify_settings, smtp_catcher
):
    """Manual: one language for the share (majority or first recipient), chosen by share."""
    settings = notify_settings()
    share = shared(events, "bkt_1", [user("usr_peeters"), user("usr_dubois")], language="fr")
    await apply(mongo_db, [*world(events), share])
    await Sender(mongo_db, settings).run_until_idle()

    mails = smtp_catcher.messages()
    assert len(mails) == 2
    assert {m["Content-Language"] for m in mails} == {"fr"}
    assert all(m["Subject"] == "Jan Janssens a partagé un examen avec vous" for m in mails)


async def test_anonymized_share_never_reveals_the_patients_initials(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    share = shared(
        events, "bkt_anon", [user("usr_peeters")], anonymize=True, study_uids=(STUDY, STUDY_2)
    )
    await apply(mongo_db, [*world(events), share])
    await Sender(mongo_db, settings).run_until_idle()

    [mail] = smtp_catcher.messages()
    raw = mail.as_string()
    assert "J.D." not in raw and "J.D" not in mail.get_body(("plain",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    assert text.count("Patient: Anonymous") == 2
    assert "CT thorax" not in text and "MR knee" not in text, "PS3.15 Annex E: no description"
    assert STUDY not in raw and STUDY_2 not in raw, "no study UID: links name the bucket"
    assert "shared-with-me/2?bucket=bkt_anon" in text
    assert mail["Subject"] == "Jan Janssens shared 2 exams with you"


async def test_send_mail_off_sends_no_mail_and_no_personal_message(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    share = shared(
        events, "bkt_quiet", [user("usr_peeters")], send_mail=False, message="confidential note"
    )
    await apply(mongo_db, [*world(events), share])

    assert await Sender(mongo_db, settings).run_until_idle() == 0
    assert smtp_catcher.messages() == []
    assert await mongo_db.deliveries.count_documents({}) == 0
    assert await mongo_db.deliveries.count_documents({"context.message": "confidential note"}) == 0


async def test_group_share_mails_every_member_once_even_when_also_named_directly(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    group = [
        events(user_registered("usr_a", "Ann", "A"), "usr_a"),
        events(user_registered("usr_b", "Bart", "B"), "usr_b"),
        events(user_registered("usr_c", "Cas", "C"), "usr_c"),
        events(
            GroupCreated(
                group_id="grp_1",
                name="Praktijk Noord",
                primary_contact_id="usr_a",
                member_ids=("usr_a", "usr_b"),
                created_by="usr_a",
            ),
            "grp_1",
        ),
        events(GroupMemberAdded(group_id="grp_1", user_id="usr_c", added_by="usr_a"), "grp_1"),
        events(GroupMemberRemoved(group_id="grp_1", user_id="usr_b", removed_by="usr_a"), "grp_1"),
    ]
    share = shared(
        events,
        "bkt_grp",
        [RecipientRef(recipient_id="grp_1", kind="group"), user("usr_a")],
    )
    await apply(mongo_db, [*world(events), *group, share])
    await Sender(mongo_db, settings).run_until_idle()

    recipients = sorted(str(m["To"]) for m in smtp_catcher.messages())
    assert recipients == ["Ann A <usr_a@example.org>", "Cas C <usr_c@example.org>"]


async def test_department_recipient_gets_the_department_mail_and_new_recipient_an_invitation(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    share = shared(
        events,
        "bkt_mixed",
        [
            RecipientRef(recipient_id="dep_rad", kind="department"),
            RecipientRef(recipient_id="rcp_new", kind="email", email="new.doctor@clinic.example"),
        ],
        message="For your files.",
    )
    await apply(mongo_db, [*world(events), share])
    await Sender(mongo_db, settings).run_until_idle()

    [department] = smtp_catcher.to("radiologie@aznoord.example")
    assert "Radiologie AZ Noord" in department["To"]
    assert "CT thorax" in department.get_body(("plain",)).get_content()
    [invitation] = smtp_catcher.to("new.doctor@clinic.example")
    assert invitation["Subject"] == "Jan Janssens invites you to view an exam on StudyShare"
    text = invitation.get_body(("plain",)).get_content()
    assert "create your StudyShare account" in text
    token = invitation_token(settings.invitation_secret, "bkt_mixed", "new.doctor@clinic.example")
    assert (
        "https://studyshare.example/register?email=new.doctor%40clinic.example&bucket=bkt_mixed"
        f"&token={token}" in text
    ), "the token proves the mailbox when the invitation is accepted"
    assert "For your files." in text and "Patient: J.D." in text


async def test_mail_goes_to_the_address_the_recipient_has_now(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    people = world(events)
    moved = events(
        UserProfileChanged(user_id="usr_peeters", email="an@newmail.example"), "usr_peeters"
    )
    share = shared(events, "bkt_1", [user("usr_peeters")])
    await apply(mongo_db, [*people, moved, share])
    await Sender(mongo_db, settings).run_until_idle()

    assert [str(m["To"]) for m in smtp_catcher.messages()] == ["An Peeters <an@newmail.example>"]


async def test_a_share_mail_waits_for_the_exam_details_then_goes_without_them(
    mongo_db, events, notify_settings, smtp_catcher
):
    """StudyReceived comes from another topic and may lag: the mail waits a while for it."""
    from datetime import timedelta

    from studyshare.notify.service_layer.sender import utcnow

    settings = notify_settings(study_details_wait_s=60, delivery_max_attempts=10)
    unknown_study = "1.2.999"
    share = shared(events, "bkt_1", [user("usr_peeters")], study_uids=(unknown_study,))
    await apply(mongo_db, [*world(events), share])

    assert await Sender(mongo_db, settings).run_until_idle() == 1
    record = await mongo_db.deliveries.find_one()
    assert (
        record["state"] == "retry" and record["last_error"] == "the exam details are not known yet"
    )
    assert smtp_catcher.messages() == []

    later = Sender(mongo_db, settings, clock=lambda: utcnow() + timedelta(seconds=61))
    await later.run_until_idle()
    [mail] = smtp_catcher.messages()
    text = mail.get_body(("plain",)).get_content()
    assert "Exam: -" in text and f"/studies/{unknown_study}?bucket=bkt_1" in text


async def test_a_group_without_reachable_members_gets_the_group_email(
    mongo_db, events, notify_settings, smtp_catcher
):
    settings = notify_settings()
    contact = events(user_registered("usr_x", "Xavier", "X", email=None), "usr_x")
    group = events(
        GroupCreated(
            group_id="grp_2",
            name="Praktijk Zuid",
            primary_contact_id="usr_x",
            email="secretariaat@zuid.example",
            created_by="usr_x",
        ),
        "grp_2",
    )
    share = shared(events, "bkt_2", [RecipientRef(recipient_id="grp_2", kind="group")])
    await apply(mongo_db, [*world(events), contact, group, share])
    await Sender(mongo_db, settings).run_until_idle()

    assert [m["To"].addresses[0].addr_spec for m in smtp_catcher.messages()] == [
        "secretariaat@zuid.example"
    ]
