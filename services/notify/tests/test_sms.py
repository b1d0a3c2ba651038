"""Issue point 3: SMS through the provider adapter over HTTP; codes never in logs or records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bson import json_util

from studyshare.contracts.events.identity import PatientOTPIssued
from studyshare.contracts.events.share import OTPRequested
from studyshare.notify.service_layer.sender import Sender
from studyshare.plumbing.sealing import DEV_PUBLIC_KEY, generate_keypair, seal

from .conftest import apply, drain, events_of, soon, user_registered

CODE = "842193"


def otp_requested(events, bucket: str, recipient: str, code: str = CODE, **fields):
    values = {
        "bucket_id": bucket,
        "recipient_id": recipient,
        "otp_id": f"otp_{bucket}",
        "sealed_code": seal(code, DEV_PUBLIC_KEY),
        "expires_at": soon(5),
        "language": "en",
    }
    values.update(fields)
    return events(OTPRequested(**values), bucket)


async def test_bucket_otp_goes_by_sms_to_the_registered_mobile_and_no_code_is_kept(
    mongo_db, events, notify_settings, sms_sink, capfd
):
    settings = notify_settings()
    people = [events(user_registered("usr_r", "Rik", "R", mobile="+32470000001"), "usr_r")]
    await apply(mongo_db, [*people, otp_requested(events, "bkt_1", "usr_r")])

    await drain(Sender(mongo_db, settings))

    [sms] = sms_sink.received
    assert sms["to"] == "+32470000001"
    assert sms["sender"] == "StudyShare"
    assert CODE in sms["text"] and "one-time password" in sms["text"]
    [record] = await mongo_db.deliveries.find().to_list(None)
    assert record["state"] == "sent" and record["channel"] == "sms"
    stored = json_util.dumps(record)
    assert CODE not in stored, "no code in the delivery record"
    assert "sealed_code" not in record, "even the sealed code is dropped once sent"
    assert record["redacted_text"].count("******") == 1
    notify_events = json_util.dumps(await mongo_db.events.find().to_list(None))
    assert CODE not in notify_events
    [sent] = await events_of(mongo_db, "NotificationSent")
    assert sent["payload"]["channel"] == "sms" and sent["payload"]["template"] == "bucket_otp"
    out, err = capfd.readouterr()
    assert "notification.sent" in out
    assert CODE not in out and CODE not in err, "no code in the logs"


async def test_patient_otp_goes_to_the_given_mobile_in_the_patients_language(
    mongo_db, events, notify_settings, sms_sink
):
    settings = notify_settings()
    issued = events(
        PatientOTPIssued(
            reference_id="k3nqz7refid",
            study_uid="1.2.3",
            mobile="+32470000002",
            sealed_code=seal("550011", DEV_PUBLIC_KEY),
            language="nl",
            expires_at=soon(5),
        ),
        "pat_k3nqz7refid",
    )
    await apply(mongo_db, [issued])
    await drain(Sender(mongo_db, settings))

    [sms] = sms_sink.received
    assert sms["to"] == "+32470000002"
    assert "550011" in sms["text"] and "uw code" in sms["text"]
    assert "k3nqz7refid" not in sms["text"], "the code alone: no reference is needed"


async def test_the_sms_provider_gets_its_endpoint_and_bearer_token_from_settings(
    mongo_db, events, notify_settings, sms_sink
):
    settings = notify_settings(sms_token="wrong-token", delivery_max_attempts=1)
    people = [events(user_registered("usr_r", "Rik", "R", mobile="+32470000001"), "usr_r")]
    await apply(mongo_db, [*people, otp_requested(events, "bkt_1", "usr_r")])
    await drain(Sender(mongo_db, settings))

    assert sms_sink.unauthorized == 1 and sms_sink.received == []
    [record] = await mongo_db.deliveries.find().to_list(None)
    assert record["state"] == "parked" and record["reason"] == "SMS provider replied 401"


async def test_provider_outage_is_retried_with_backoff_and_then_delivered(
    mongo_db, events, notify_settings, sms_sink
):
    settings = notify_settings(delivery_max_attempts=4)
    sms_sink.fail_next = 2
    people = [events(user_registered("usr_r", "Rik", "R", mobile="+32470000001"), "usr_r")]
    await apply(mongo_db, [*people, otp_requested(events, "bkt_1", "usr_r")])
    await drain(Sender(mongo_db, settings))

    assert len(sms_sink.received) == 1
    [record] = await mongo_db.deliveries.find().to_list(None)
    assert record["state"] == "sent" and record["attempts"] == 3
    [sent] = await events_of(mongo_db, "NotificationSent")
    assert sent["payload"]["attempts"] == 3


async def test_an_expired_code_is_not_sent_and_is_parked_with_its_reason(
    mongo_db, events, notify_settings, sms_sink
):
    settings = notify_settings()
    people = [events(user_registered("usr_r", "Rik", "R", mobile="+32470000001"), "usr_r")]
    late = otp_requested(events, "bkt_1", "usr_r", expires_at=datetime.now(UTC) - timedelta(1))
    await apply(mongo_db, [*people, late])
    await drain(Sender(mongo_db, settings))

    assert sms_sink.received == []
    [record] = await mongo_db.deliveries.find().to_list(None)
    assert record["state"] == "parked"
    assert record["reason"] == "the one-time code expired before it could be sent"
    assert "sealed_code" not in record
    [failed] = await events_of(mongo_db, "NotificationFailed")
    assert failed["payload"]["reason"] == record["reason"]


async def test_a_recipient_without_mobile_is_parked_not_retried(
    mongo_db, events, notify_settings, sms_sink
):
    settings = notify_settings(delivery_max_attempts=5)
    people = [events(user_registered("usr_r", "Rik", "R"), "usr_r")]
    await apply(mongo_db, [*people, otp_requested(events, "bkt_1", "usr_r")])
    await drain(Sender(mongo_db, settings))

    [record] = await mongo_db.deliveries.find().to_list(None)
    assert (record["state"], record["attempts"]) == ("parked", 1)
    assert record["reason"] == "the recipient has no registered mobile number"


async def test_a_code_sealed_for_another_key_is_refused_not_sent(
    mongo_db, events, notify_settings, sms_sink
):
    settings = notify_settings()
    _, other_public = generate_keypair()
    people = [events(user_registered("usr_r", "Rik", "R", mobile="+32470000001"), "usr_r")]
    foreign = otp_requested(events, "bkt_1", "usr_r", sealed_code=seal(CODE, other_public))
    await apply(mongo_db, [*people, foreign])
    await drain(Sender(mongo_db, settings))

    assert sms_sink.received == []
    [record] = await mongo_db.deliveries.find().to_list(None)
    assert record["reason"] == "the one-time code cannot be opened with notify's key"
    assert json.dumps(record, default=str).count(CODE) == 0


async def test_a_crash_while_sending_logs_no_code(
    mongo_db, events, notify_settings, sms_sink, capfd
):
    settings = notify_settings(delivery_max_attempts=1)
    people = [events(user_registered("usr_r", "Rik", "R", mobile="+32470000001"), "usr_r")]
    await apply(mongo_db, [*people, otp_requested(events, "bkt_1", "usr_r")])
    sender = Sender(mongo_db, settings)

    async def broken(to: str, text: str):
        raise RuntimeError("provider client broke")

    sender.sms.send = broken
    await drain(sender)

    [record] = await mongo_db.deliveries.find().to_list(None)
    assert record["state"] == "parked" and "RuntimeError" in record["reason"]
    out, err = capfd.readouterr()
    assert "notification.attempt_crashed" in out and "provider client broke" in out
    assert CODE not in out and CODE not in err


async def test_a_mobile_change_sends_the_code_to_the_new_number_and_tells_the_old_one(
    mongo_db, events, notify_settings, sms_sink
):
    """Issue 15, point 2: the code to the new number (sealed, never kept), a notice without
    any code or number to the previous one, in the user's language."""
    from studyshare.contracts.events.identity import MobileChangeRequested, MobileNumberChanged

    settings = notify_settings()
    requested = events(
        MobileChangeRequested(
            user_id="usr_m",
            change_id="mob_1",
            mobile="+32470000099",
            sealed_code=seal("731902", DEV_PUBLIC_KEY),
            expires_at=soon(5),
            language="fr",
        ),
        "usr_m",
    )
    changed = events(
        MobileNumberChanged(
            user_id="usr_m", change_id="mob_1", previous_mobile="+32470000003", language="fr"
        ),
        "usr_m",
    )
    await apply(mongo_db, [requested, changed])
    await drain(Sender(mongo_db, settings))

    by_number = {sms["to"]: sms["text"] for sms in sms_sink.received}
    assert set(by_number) == {"+32470000099", "+32470000003"}
    assert "731902" in by_number["+32470000099"] and "nouveau" in by_number["+32470000099"]
    notice = by_number["+32470000003"]
    assert "modifié" in notice and "731902" not in notice and "+32470000099" not in notice
    records = json_util.dumps(await mongo_db.deliveries.find().to_list(None))
    assert "731902" not in records
