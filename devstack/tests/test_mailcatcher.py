"""The mail catcher as a real SMTP server process, and the SMS sink."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib
import httpx
import pytest

from .conftest import Processes

TOKEN = "sms-test-credential"


@pytest.fixture(scope="module")
def catcher(processes: Processes) -> tuple[str, int]:
    return processes.mailcatcher(sms_token=TOKEN)


def _message(to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "StudyShare <noreply@studyshare.local>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="studyshare.local")
    message.set_content("Open https://studyshare.local/s/bkt_1 to see the study.")
    message.add_alternative(
        "<p>Open <a href='https://studyshare.local/s/bkt_1'>it</a></p>", subtype="html"
    )
    return message


def test_smtp_message_is_served_over_http(catcher: tuple[str, int]) -> None:
    url, smtp_port = catcher
    message = _message("Dr. Peeters <dr.peeters@example.org>", "Een studie werd gedeeld ✓")
    with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
        smtp.send_message(message)

    listed = httpx.get(f"{url}/dev/mail", params={"to": "DR.PEETERS@example.org"}).json()
    assert len(listed) == 1
    mail = listed[0]
    assert mail["subject"] == "Een studie werd gedeeld ✓"
    assert mail["from"] == "StudyShare <noreply@studyshare.local>"
    assert mail["to"] == ["dr.peeters@example.org"]
    assert mail["message_id"] == message["Message-ID"]
    assert "https://studyshare.local/s/bkt_1" in mail["text"]
    assert "<a href=" in mail["html"]
    assert mail["links"] == ["https://studyshare.local/s/bkt_1"]
    assert mail["received_at"]

    one = httpx.get(f"{url}/dev/mail/{mail['id']}").json()
    assert one["headers"]["Subject"] == ["Een studie werd gedeeld ✓"]
    raw = httpx.get(f"{url}/dev/mail/{mail['id']}/raw")
    assert raw.headers["content-type"].startswith("message/rfc822")
    assert b"Message-ID" in raw.content
    page = httpx.get(f"{url}/")
    assert "Een studie werd gedeeld" in page.text
    assert httpx.get(f"{url}/dev/mail/{mail['id']}/view").status_code == 200
    assert httpx.get(f"{url}/dev/mail/nope").status_code == 404


async def test_aiosmtplib_newest_first_filter_and_clear(catcher: tuple[str, int]) -> None:
    url, smtp_port = catcher
    for n in range(3):
        await aiosmtplib.send(
            _message(f"user{n}@example.org", f"mail {n}"), hostname="127.0.0.1", port=smtp_port
        )
    async with httpx.AsyncClient(base_url=url) as client:
        subjects = [m["subject"] for m in (await client.get("/dev/mail")).json()]
        assert subjects[:3] == ["mail 2", "mail 1", "mail 0"]
        only = (await client.get("/dev/mail", params={"to": "user1@example.org"})).json()
        assert [m["subject"] for m in only] == ["mail 1"]
        assert (await client.delete("/dev/mail")).status_code == 204
        assert (await client.get("/dev/mail")).json() == []


def test_sms_sink_requires_the_bearer_credential(catcher: tuple[str, int]) -> None:
    url, _ = catcher
    sms = {"to": "+32470123456", "text": "Your code is 123456", "sender": "StudyShare"}
    assert httpx.post(f"{url}/dev/sms", json=sms).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{url}/dev/sms", json=sms, headers=wrong).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    created = httpx.post(f"{url}/dev/sms", json=sms, headers=auth)
    assert created.status_code == 201
    assert created.json()["text"] == "Your code is 123456"
    other = {"to": "+32470000000", "text": "other"}
    assert httpx.post(f"{url}/dev/sms", json=other, headers=auth).status_code == 201

    listed = httpx.get(f"{url}/dev/sms", params={"to": "+32 470 12 34 56"}).json()
    assert [(s["to"], s["text"], s["sender"]) for s in listed] == [
        ("+32470123456", "Your code is 123456", "StudyShare")
    ]
    assert len(httpx.get(f"{url}/dev/sms").json()) == 2
    bad = httpx.post(f"{url}/dev/sms", json={"to": "+32"}, headers=auth)
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
