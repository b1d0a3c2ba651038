"""Unit tests of the notify domain: no broker, no database, no server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.identity import (
    GroupCompositionReported,
    GroupMemberInvited,
    GroupMembershipConfirmationDue,
    PatientOTPIssued,
    UserRegistered,
)
from studyshare.contracts.events.notify import NotificationFailed, NotificationSent
from studyshare.contracts.events.share import (
    AccessRevoked,
    BucketLocked,
    OTPRequested,
    RecipientRef,
    StudyShared,
)
from studyshare.contracts.events.study import BreakTheGlassUsed
from studyshare.notify.adapters.mailer import build_message, message_id_for
from studyshare.notify.adapters.templates import render_mail, render_sms
from studyshare.notify.domain import compose
from studyshare.notify.domain.exceptions import NotificationNotParked
from studyshare.notify.domain.model import (
    LANGUAGES,
    Permanent,
    RetryPolicy,
    Sent,
    Target,
    Transient,
    after_attempt,
    notification_id,
)
from studyshare.notify.domain.notification import Notification
from studyshare.notify.domain.reactions import ReactionOptions, reactions
from studyshare.notify.domain.views import StudyView, UserView
from studyshare.notify.settings import NotifySettings
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.sealing import DEV_PRIVATE_KEY, generate_keypair
from studyshare.plumbing.testing import production_settings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def envelope(event, aggregate_id="agg_1"):
    return envelope_for(
        event, aggregate_id=aggregate_id, aggregate_version=1, actor=Actor(), correlation_id="c"
    )


def share(**fields) -> StudyShared:
    values = {
        "bucket_id": "bkt_1",
        "study_uids": ("1.2.3",),
        "recipients": (
            RecipientRef(recipient_id="usr_1", kind="user"),
            RecipientRef(recipient_id="grp_1", kind="group"),
            RecipientRef(recipient_id="dep_1", kind="department"),
            RecipientRef(recipient_id="rcp_1", kind="email", email="New@Clinic.example"),
        ),
        "sender_id": "usr_s",
        "access_level": "images_report_read",
        "reason": "secret reason",
        "language": "nl",
        "message": "hello",
    }
    values.update(fields)
    return StudyShared(**values)


# --- identity of a message -------------------------------------------------------------------


def test_notification_id_is_a_hash_of_cause_recipient_and_channel():
    a = notification_id("evt-1", "usr_1", "mail")
    assert a == notification_id("evt-1", "usr_1", "mail")
    assert a.startswith("ntf_") and len(a) == 28
    assert len({a, notification_id("evt-2", "usr_1", "mail"),
                notification_id("evt-1", "usr_2", "mail"),
                notification_id("evt-1", "usr_1", "sms")}) == 4  # fmt: skip


def test_a_user_is_the_same_recipient_named_directly_or_through_a_group():
    direct = Target("user", id="usr_1")
    assert direct.key == "usr_1"
    assert Target("email", email=" New@Clinic.example ").key == "email:new@clinic.example"
    assert Target("group", id="grp_1").expands and not direct.expands


def test_message_id_is_derived_from_the_notification_id():
    assert message_id_for("ntf_abc", "StudyShare <no-reply@studyshare.be>") == (
        "<ntf_abc@studyshare.be>"
    )


# --- reactions -------------------------------------------------------------------------------


def test_a_share_asks_for_one_mail_per_recipient_in_the_share_language():
    intents = reactions(envelope(share()))
    assert [(i.target.kind, i.template, i.language) for i in intents] == [
        ("user", "share", "nl"),
        ("group", "share", "nl"),
        ("department", "share", "nl"),
        ("email", "invitation", "nl"),
    ]
    assert [i.kind for i in intents] == ["mail", "fanout", "mail", "mail"]
    assert all("reason" not in i.context for i in intents), "the reason never reaches a mail"
    assert intents[0].context["message"] == "hello"


def test_send_mail_off_asks_for_nothing():
    assert reactions(envelope(share(send_mail=False))) == []


def test_otp_requests_ask_for_an_sms_carrying_the_sealed_code():
    expires = NOW + timedelta(minutes=5)
    [bucket] = reactions(
        envelope(
            OTPRequested(
                bucket_id="bkt_1",
                recipient_id="usr_1",
                otp_id="otp_1",
                sealed_code="SEALED",
                expires_at=expires,
                language="fr",
            )
        )
    )
    assert (bucket.channel, bucket.target, bucket.template) == (
        "sms",
        Target("user", id="usr_1"),
        "bucket_otp",
    )
    assert (bucket.sealed_code, bucket.expires_at, bucket.language) == ("SEALED", expires, "fr")
    [patient] = reactions(
        envelope(
            PatientOTPIssued(
                reference_id="r1id",
                study_uid="1.2",
                mobile="+32470",
                sealed_code="S",
                expires_at=expires,
            )
        )
    )
    assert patient.target == Target("mobile", mobile="+32470") and patient.template == "patient_otp"
    assert patient.context == {"reference_id": "r1id"}, "the message names the reference by id"


def test_alerts_reminders_and_registrations():
    [locked] = reactions(
        envelope(
            BucketLocked(
                bucket_id="b", recipient_id="u", failed_attempts=5, sending_department_id="dep_1"
            )
        )
    )
    assert locked.target == Target("alert", id="dep_1") and locked.language is None
    [glass] = reactions(
        envelope(BreakTheGlassUsed(study_uid="1.2", user_id="u", reason="r", valid_until=NOW))
    )
    assert glass.target == Target("alert") and glass.context["reason"] == "r"
    [due] = reactions(
        envelope(GroupMembershipConfirmationDue(group_id="g", user_id="u", due_since=NOW))
    )
    assert due.target == Target("user", id="u") and due.template == "group_confirmation_due"
    [invited] = reactions(
        envelope(GroupMemberInvited(group_id="g", user_id="u", invited_by="usr_f"))
    )
    assert invited.target == Target("user", id="u") and invited.template == "group_invitation"
    assert invited.context == {"group_id": "g", "invited_by": "usr_f"}
    told = reactions(
        envelope(
            GroupCompositionReported(
                group_id="g", reported_by="u", remark="Nys left", admin_ids=("a1", "a2")
            )
        )
    )
    assert [(i.target, i.template) for i in told] == [
        (Target("user", id="a1"), "group_composition_reported"),
        (Target("user", id="a2"), "group_composition_reported"),
    ], "issue 16, point 5: the group's admins hear of a wrong composition"
    [desk] = reactions(
        envelope(GroupCompositionReported(group_id="g", reported_by="u", remark="x"))
    )
    assert desk.target == Target("service_desk"), "no other admin: the service desk"
    pending = UserRegistered(
        user_id="u", username="u", first_name="A", last_name="B", pending_approval=True
    )
    [notice] = reactions(envelope(pending))
    assert notice.target == Target("service_desk")
    assert reactions(envelope(pending), ReactionOptions(notify_pending_registrations=False)) == []
    approved = UserRegistered(user_id="u", username="u", first_name="A", last_name="B")
    assert reactions(envelope(approved)) == []
    assert reactions(envelope(AccessRevoked(bucket_id="b", scope="bucket", revoked_by="u"))) == []


# --- delivery state machine --------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_parks_after_the_last_attempt():
    policy = RetryPolicy(max_attempts=4, base_s=5, max_s=12)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 10, 12, 12]
    first = after_attempt(Transient("451"), 1, policy, NOW)
    assert (first.state, first.due_at, first.reason) == ("retry", NOW + timedelta(seconds=5), "451")
    last = after_attempt(Transient("451"), 4, policy, NOW)
    assert (last.state, last.reason) == ("parked", "451 (after 4 attempts)")


def test_permanent_failures_park_at_once_and_sent_is_final():
    policy = RetryPolicy()
    assert after_attempt(Permanent("550"), 1, policy, NOW).state == "parked"
    assert after_attempt(Sent(), 3, policy, NOW).state == "sent"


def test_a_retry_after_the_codes_expiry_is_not_attempted():
    policy = RetryPolicy(max_attempts=6, base_s=60)
    expiry = NOW + timedelta(seconds=30)
    parked = after_attempt(Transient("503"), 1, policy, NOW, deadline=expiry)
    assert parked.state == "parked" and "expired" in parked.reason


# --- the Notification aggregate -----------------------------------------------------------------


def _sent() -> NotificationSent:
    return NotificationSent(
        notification_id="ntf_1",
        cause_event_id="e",
        cause_event_type="StudyShared",
        channel="mail",
        template="share",
        language="en",
    )


def test_a_notification_is_recorded_sent_once():
    notification = Notification("ntf_1")
    [event] = notification.record_sent(_sent())
    notification.apply(event)
    assert notification.record_sent(_sent()) == []


def test_only_a_parked_notification_can_be_requeued():
    """Rule NotificationNotParked."""
    notification = Notification("ntf_1")
    with pytest.raises(NotificationNotParked):
        notification.requeue("e", "usr_desk")
    failed = NotificationFailed(
        notification_id="ntf_1",
        cause_event_id="e",
        cause_event_type="StudyShared",
        channel="mail",
        reason="550",
        attempts=1,
    )
    notification.apply(*notification.record_failed(failed))
    [requeued] = notification.requeue("e", "usr_desk")
    assert requeued.previous_reason == "550" and requeued.requeued_by == "usr_desk"
    notification.apply(requeued)
    with pytest.raises(NotificationNotParked):
        notification.requeue("e", "usr_desk")


# --- texts ---------------------------------------------------------------------------------------


def share_mail(language: str, **context):
    values = {
        "bucket_id": "bkt_1",
        "study_uids": ["1.2.3"],
        "urgent": True,
        "anonymize": False,
        "message": "<script>alert(1)</script> & see",
        "valid_until": None,
        "unlimited": True,
    }
    values.update(context)
    ctx = compose.share_context(
        values,
        language,
        base_url="https://s.example/",
        recipient=UserView(id="usr_1", first_name="An", last_name="Peeters"),
        sender=UserView(id="usr_s", first_name="Jan", last_name="Janssens"),
        department=None,
        studies={"1.2.3": StudyView("1.2.3", "J.D.", "CT thorax", date(2026, 3, 12))},
    )
    return render_mail("share", language, ctx)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_template_renders_in_every_language(language):
    mail = share_mail(language)
    assert mail.subject and "Jan Janssens" in mail.subject
    assert "J.D." in mail.text and "CT thorax" in mail.text
    assert "https://s.example/studies/1.2.3?bucket=bkt_1" in mail.text
    for template in ("invitation",):
        assert render_mail(template, language, {**_share_ctx(language), "email": "x@y"}).subject
    alerts = {
        "bucket_locked": {
            "recipient_name": None,
            "bucket_id": "b",
            "failed_attempts": 5,
            "locked_recipient_name": "R",
            "department_name": None,
            "link": "l",
        },
        "break_the_glass": {
            "recipient_name": "A",
            "user_name": "U",
            "study_uid": "1.2",
            "description": None,
            "study_date": None,
            "reason": "r",
            "valid_until": "x",
            "department_name": "D",
            "link": "l",
        },
        "group_confirmation_due": {"recipient_name": "A", "group_name": "G", "link": "l"},
        "group_composition_reported": {
            "recipient_name": "A",
            "group_name": "G",
            "reporter_name": "R",
            "remark": "Nys left",
            "link": "l",
        },
        "group_invitation": {
            "recipient_name": "A",
            "group_name": "G",
            "inviter_name": "I",
            "link": "l",
        },
        "identity_linked": {
            "recipient_name": "A",
            "provider": "be-eid",
            "linked_at": "7/12/2026",
            "link": "l",
        },
        "registration_pending": {
            "recipient_name": None,
            "registrant_name": "N",
            "username": "n",
            "profession": "dentist",
            "link": "l",
        },
    }
    for template, context in alerts.items():
        rendered = render_mail(template, language, context)
        assert rendered.subject and rendered.text.strip()
    for template in ("bucket_otp", "patient_otp"):
        text = render_sms(template, language, compose.otp_context("123456", NOW))
        assert "123456" in text and "12:00" in text and len(text) <= 160


def _share_ctx(language):
    return compose.share_context(
        {"bucket_id": "b", "study_uids": ["1"], "urgent": False, "anonymize": False},
        language,
        base_url="https://s",
        recipient=None,
        sender=None,
        department=None,
        studies={},
    )


def test_urgent_is_in_the_subject_and_the_message_cannot_inject_html():
    mail = share_mail("en")
    assert mail.subject.startswith("Urgent: ")
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "<script>alert(1)</script> & see" in mail.text


def test_only_our_own_addresses_are_links_in_the_html_part():
    """Any address in a sender's message (or an exam's description) was made a link in our
    official mail: a phishing link that looked like ours. It stays text now."""
    message = "Log in again at https://studyshare-login.example/reset please"
    mail = share_mail("en", message=message)
    ctx_mail = render_mail("share", "en", {**_share_ctx("en"), "message": message}, "https://s")
    for html in (mail.html, ctx_mail.html):
        assert 'href="https://studyshare-login.example' not in html
        assert "https://studyshare-login.example/reset" in html, "kept as text"
    assert '<a href="https://s/studies/1?bucket=b">' in ctx_mail.html


def test_anonymized_shares_show_anonymous_instead_of_the_initials():
    for language, word in {
        "en": "Anonymous",
        "nl": "Anoniem",
        "fr": "Anonyme",
        "de": "Anonym",
    }.items():
        mail = share_mail(language, anonymize=True)
        assert "J.D." not in mail.text and word in mail.text


def test_an_unknown_sender_or_exam_still_gives_a_readable_mail():
    ctx = _share_ctx("de")
    assert ctx["sender_name"] == "Ein StudyShare-Benutzer"
    assert ctx["studies"][0]["patient"] is None


def test_the_mail_carries_its_headers():
    mail = share_mail("fr")
    message = build_message(
        notification_id="ntf_1",
        mail_from="StudyShare <no-reply@s.example>",
        to="a@b.example",
        to_name="An Peeters",
        mail=mail,
        language="fr",
        urgent=True,
    )
    assert message["Message-ID"] == "<ntf_1@s.example>"
    assert message["Content-Language"] == "fr" and message["Importance"] == "high"
    assert message.get_body(("html",)) is not None


# --- settings ------------------------------------------------------------------------------------


PRODUCTION_KAFKA = production_settings("notify")


def test_production_refuses_the_development_otp_key_and_sms_token():
    private, public = generate_keypair()
    production = {**PRODUCTION_KAFKA, "otp_seal_public_key": public}
    with pytest.raises(ValueError, match="development OTP sealing key"):
        NotifySettings(
            **production, otp_seal_private_key=DEV_PRIVATE_KEY, sms_token="real"
        ).require_delivery_secrets()
    with pytest.raises(ValueError, match="SMS_TOKEN"):
        NotifySettings(**production, otp_seal_private_key=private).require_delivery_secrets()
    secrets = {"otp_seal_private_key": private, "sms_token": "provider-token-1"}
    with pytest.raises(ValueError, match="INVITATION_SECRET"):  # the invitation links' key
        NotifySettings(**production, **secrets).require_delivery_secrets()
    ok = NotifySettings(**production, **secrets, invitation_secret="an-invitation-key-2026")
    ok.require_delivery_secrets()
    assert ok.otp_seal_private_key == private
    # the API and the relay hold neither secret
    NotifySettings(**production)
    assert NotifySettings(environment="test").otp_seal_private_key == DEV_PRIVATE_KEY


def test_sms_settings_also_read_the_kubernetes_secret_names(monkeypatch):
    monkeypatch.setenv("STUDYSHARE_SMS_API_URL", "https://sms.provider.example/send")
    monkeypatch.setenv("STUDYSHARE_SMS_API_TOKEN", "tok-1")
    settings = NotifySettings(environment="test")
    assert (settings.sms_url, settings.sms_token) == ("https://sms.provider.example/send", "tok-1")


def test_an_event_whose_payload_breaks_its_schema_asks_for_nothing():
    from studyshare.contracts.envelope import EventEnvelope

    broken = EventEnvelope(
        event_type="StudyShared",
        schema_version=2,
        aggregate_type="Bucket",
        aggregate_id="bkt_x",
        aggregate_version=1,
        correlation_id="c",
        payload={"bucket_id": "bkt_x"},
    )
    assert reactions(broken) == []


def test_the_account_holder_is_told_when_an_external_identity_is_linked():
    """A linked eID is a second way into the account: its holder hears of it, whoever linked
    it (nothing told them before)."""
    from studyshare.contracts.events.identity import ExternalIdentityLinked

    [told] = reactions(envelope(ExternalIdentityLinked(user_id="u", provider="be-eid")))
    assert told.channel == "mail" and told.target == Target("user", id="u")
    assert told.template == "identity_linked" and told.context["provider"] == "be-eid"
    for language in LANGUAGES:
        mail = render_mail(
            "identity_linked",
            language,
            {"recipient_name": "A", "provider": "be-eid", "linked_at": "x", "link": "https://s/p"},
        )
        assert "be-eid" in mail.text and "https://s/p" in mail.text, language
