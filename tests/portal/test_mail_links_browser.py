"""Issue 14 point 3: every link of every mail and SMS opens the right page.

Every kind of mail notify sends (`studyshare.notify.domain.reactions.MAIL_TEMPLATES`) and every
kind of SMS (`SMS_TEMPLATES`) is caused through the public API of the whole platform; the
caught mails and SMS are read from the mail catcher (`/dev/mail`, `/dev/sms`). Every link of
each mail, from its text part and from the `href`s of its HTML part (the two must agree), is
opened in one logged-out browser: a page that needs a login goes to `/login?next=...`, the
mail's addressee logs in and lands back on the link, and the page shows what the mail promised
(its own heading or element, the bucket, the study, the group). An SMS carries no link.

One kind cannot be caused in a test: the three-monthly membership reminder
(`group_confirmation_due`) is emitted by identity's timer once a membership is at least a day
old. Its mail is rendered by notify's own renderer and composer with the platform's public URL,
and its link followed like the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from studyshare.devstack.inbox import URL
from studyshare.devstack.platform import LocalPlatform
from studyshare.notify.adapters.templates import render_mail
from studyshare.notify.domain import compose
from studyshare.notify.domain.reactions import MAIL_TEMPLATES, SMS_TEMPLATES
from studyshare.notify.domain.views import GroupView

from ..storykit import OTP_CODE, Gateway, Person, anything, ok, unique, wait_for
from .test_portal_browser import WAIT_S, Page

BIRTH_DATE = "19620418"


class Hrefs(HTMLParser):
    """The `href` of every `<a>` of an HTML part (entities decoded, as a browser reads them)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.found += [value for name, value in attrs if name == "href" and value]


def links_of(mail: dict[str, Any]) -> list[str]:
    """The links of the text part; the HTML part links exactly those."""
    text = list(dict.fromkeys(URL.findall(mail["text"] or "")))
    parser = Hrefs()
    parser.feed(mail["html"] or "")
    assert list(dict.fromkeys(parser.found)) == text, (mail["subject"], parser.found, text)
    assert set(mail["links"]) == set(text), "the catcher reads the same links"
    return text


def user(person: Person) -> dict[str, str]:
    return {"kind": "user", "id": person.user_id}


@pytest.fixture(scope="module")
def world(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    """A sending department (its admin, a physician), a recipient physician without a
    department, a third physician, a service desk member with an e-mail address."""
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department = api.radiology_department(desk, unique("Radiology "))
    admin = api.register(
        desk,
        "Ada",
        roles=["department_admin", "department_staff"],
        department_ids=[department],
        admin_of=[department],
    )
    sender = api.register(desk, "Sam", roles=["physician"], department_ids=[department])
    return SimpleNamespace(
        desk=desk,
        department=department,
        admin=admin,
        sender=sender,
        recipient=api.register(desk, unique("Rik"), roles=["physician"]),
        third=api.register(desk, unique("Tess"), roles=["physician"]),
        helpdesk=api.register(desk, unique("Hanna"), roles=["service_desk"]),
        first=api.upload(sender, "CT links one", "Links^Lena", BIRTH_DATE),
        second=api.upload(sender, "MR links two", "Links^Lena", BIRTH_DATE),
        glass=api.upload(sender, "CT links glass", "Links^Gust", BIRTH_DATE),
    )


def cause_every_mail_and_sms(api: Gateway, w: SimpleNamespace) -> dict[str, Any]:
    """Each kind of mail and SMS, caused through the public API; what the checks need."""
    one, two, glass = w.first.study_uid, w.second.study_uid, w.glass.study_uid
    shared = api.shared(
        w.sender,
        study_uids=[one, two],
        recipients=[user(w.recipient)],
        access_level="images_report_read",
        message="Links test: both exams.",
    )
    anonymized = api.shared(  # a study the recipient holds no other share of
        w.sender,
        study_uids=[glass],
        recipients=[user(w.recipient)],
        access_level="images_report_read",
        anonymize=True,
    )
    invited = f"{unique('iris.')}@invited.studyshare.test"
    invitation = api.shared(
        w.sender,
        study_uids=[one],
        recipients=[{"kind": "email", "email": invited}],
        access_level="images_report_read",
    )
    locked = api.shared(
        w.sender,
        study_uids=[two],
        recipients=[user(w.third)],
        access_level="images_report_read",
        two_factor=True,
        send_mail=False,
    )
    code = api.request_otp(w.third, locked)  # SMS bucket_otp
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        api.verify_otp(w.third, locked, wrong)  # the 5th locks: mail bucket_locked

    ok(
        api.client.put(
            f"/api/departments/{w.department}/policy",
            json={"break_the_glass": "environment", "patient_otp_required": True},
            headers=w.admin.headers,
        ),
        204,
    )
    reason = unique("unconscious patient ")

    def break_the_glass() -> Any:
        r = api.client.post(
            f"/api/studies/{glass}/break-glass", json={"reason": reason}, headers=w.third.headers
        )
        return None if r.status_code == 403 else r  # the policy has not reached it yet

    ok(wait_for(break_the_glass, "the break-the-glass policy in the study store"), 201)

    group_name = unique("Links practice ")
    group = ok(
        api.client.post("/api/groups", json={"name": group_name}, headers=w.recipient.headers),
        201,
    )["group_id"]
    ok(
        api.client.post(
            f"/api/groups/{group}/members",
            json={"user_id": w.third.user_id, "admin": False},
            headers=w.recipient.headers,
        ),
        204,
    )

    remark = unique("Dr Wouters left us ")
    told = ok(  # its only admin reports it: the service desk is told
        api.client.post(
            f"/api/groups/{group}/report-composition",
            json={"remark": remark},
            headers=w.recipient.headers,
        ),
        202,
    )
    assert told["told"] == "service_desk", told

    registrant = unique("reg.")
    letters = "".join(chr(ord("a") + int(c, 16)) for c in unique(""))
    body = {
        "username": registrant,
        "password": "Pending-pass-4242",
        "first_name": "Rosa",
        "last_name": f"Pending{letters}",
        "email": f"{registrant}@self.studyshare.test",
        "language": "en",
        "profession": "physician",
    }
    registered = ok(api.client.post("/api/users/register", json=body), 201)

    new_mobile = f"+3247{int(unique('')[:6], 16) % 10**7:07d}"
    ok(
        api.client.post(
            "/api/users/me/mobile",
            json={"mobile": new_mobile, "current_password": w.recipient.password},
            headers=w.recipient.headers,
        ),
        202,
    )
    sent = wait_for(lambda: api.sms_to(new_mobile), "the code for the new mobile")
    confirm = OTP_CODE.search(sent[0]["text"]).group(1)
    ok(
        api.client.post(
            "/api/users/me/mobile/confirm", json={"code": confirm}, headers=w.recipient.headers
        )
    )

    eid = "/api/auth/external/demo-eid"  # the recipient links an eID: they are told
    redirect = f"{str(api.client.base_url).rstrip('/')}/login/eid/demo-eid/callback"
    start = {"redirect_uri": redirect, "current_password": w.recipient.password}
    state = ok(api.client.post(f"{eid}/link/start", json=start, headers=w.recipient.headers))
    form = {"state": state["state"], "redirect_uri": redirect, "national_number": unique("85.")}
    signed = api.client.post(
        f"{eid}/authorize",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    callback = dict(parse_qsl(urlsplit(signed.headers["location"]).query))
    ok(api.client.post(f"{eid}/link", json=callback, headers=w.recipient.headers), 204)

    patient_mobile = f"+3248{int(unique('')[:6], 16) % 10**7:07d}"
    number = ok(
        api.client.post(
            f"/api/studies/{one}/reference-numbers",
            json={"patient_mobile": patient_mobile},
            headers=w.admin.headers,
        ),
        201,
    )["reference_number"]
    birth = f"{BIRTH_DATE[:4]}-{BIRTH_DATE[4:6]}-{BIRTH_DATE[6:]}"
    # a login with a number identity does not know yet counts as a failure: first wait until
    # another consumer of the study store's events (audit) has it, then ask once a second
    api.logged(w.admin, one, [("ReferenceNumberIssued", anything)], WAIT_S)

    def patient_code_sent() -> bool:
        r = api.client.post(
            "/api/auth/patient-login", json={"reference_number": number, "date_of_birth": birth}
        )
        if r.status_code == 401 and r.json().get("rule") == "PatientOTPRequired":
            return True
        time.sleep(1)
        return False

    wait_for(patient_code_sent, "the patient's SMS code", WAIT_S)
    return {
        "shared": shared,
        "anonymized": anonymized,
        "invited": invited,
        "invitation": invitation,
        "locked": locked,
        "reason": reason,
        "group": group,
        "group_name": group_name,
        "remark": remark,
        "registered": registered["user_id"],
        "registrant": body["last_name"],
        "username": registrant,
        "old_mobile": w.recipient.mobile,
        "new_mobile": new_mobile,
        "patient_mobile": patient_mobile,
    }


def caught_mails(api: Gateway, w: SimpleNamespace, c: dict[str, Any]) -> list[tuple]:
    """(kind, addressee, mail) of every kind of mail caused, as caught."""
    one, two, glass = w.first.study_uid, w.second.study_uid, w.glass.study_uid

    def mail(email: str, needle: str | tuple[str, ...], subject: str) -> dict[str, Any]:
        needles = (needle,) if isinstance(needle, str) else needle
        return wait_for(
            lambda: next(
                (
                    m
                    for m in api.mails_to(email)
                    if any(n in (m["text"] or "") for n in needles)
                    and m["subject"].startswith(subject)
                ),
                None,
            ),
            f"the mail {subject!r} to {email} about {needle}",
            WAIT_S,
        )

    r = w.recipient
    return [
        ("share", r, mail(r.email, c["shared"], "")),
        ("share (anonymized)", r, mail(r.email, c["anonymized"], "")),
        ("invitation", None, mail(c["invited"], c["invitation"], "")),
        ("bucket_locked", w.admin, mail(w.admin.email, c["locked"], "Security alert: share")),
        ("break_the_glass", w.admin, mail(w.admin.email, glass, "Security alert: break")),
        ("group_invitation", w.third, mail(w.third.email, (c["group_name"], c["group"]), "")),
        ("identity_linked", r, mail(r.email, "demo-eid", "")),
        ("registration_pending", w.helpdesk, mail(w.helpdesk.email, c["username"], "New reg")),
        (
            "group_composition_reported",
            w.helpdesk,
            mail(w.helpdesk.email, c["remark"], "The composition of"),
        ),
    ], (one, two)


def rendered_group_reminder(platform: LocalPlatform, c: dict[str, Any]) -> dict[str, Any]:
    """The reminder identity's timer asks for after three months, as notify renders it."""
    context = compose.group_confirmation_context(
        {"group_id": c["group"]},
        base_url=platform.gateway_url,
        recipient=None,
        group=GroupView(id=c["group"], name=c["group_name"]),
    )
    rendered = render_mail("group_confirmation_due", "en", context, platform.gateway_url)
    return {
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "links": URL.findall(rendered.text),
    }


def test_every_link_of_every_mail_and_sms_opens_its_page(
    api: Gateway,
    world: SimpleNamespace,
    platform: LocalPlatform,
    browser_factory: Callable[[], webdriver.Chrome],
    screenshots: Path,
) -> None:
    started = time.monotonic()
    w = world
    c = cause_every_mail_and_sms(api, w)
    mails, (one, two) = caught_mails(api, w, c)
    mails.append(("group_confirmation_due", w.recipient, rendered_group_reminder(platform, c)))
    kinds = {kind.split(" ")[0] for kind, _, _ in mails}
    assert kinds == set(MAIL_TEMPLATES), "every kind of mail notify sends is followed"

    sms = {
        kind: wait_for(lambda mobile=mobile: api.sms_to(mobile), f"the {kind} SMS", WAIT_S)
        for kind, mobile in {
            "bucket_otp": w.third.mobile,
            "mobile_change_code": c["new_mobile"],
            "mobile_changed": c["old_mobile"],
            "patient_otp": c["patient_mobile"],
        }.items()
    }
    assert set(sms) == set(SMS_TEMPLATES)
    for kind, texts in sms.items():
        assert texts, f"no {kind} SMS caught"
        for message in texts:
            assert not URL.findall(message["text"]), f"an SMS with a link: {message['text']}"

    base = platform.gateway_url.rstrip("/")
    page = Page(browser_factory(), base, screenshots, "12-mail-links")

    def expect(
        url: str, who: Person | None, css: str, lands: Callable[[str], bool], name: str
    ) -> None:
        """Logged out, open `url`; log in as `who` when asked; `css` on the page it lands on."""
        page.driver.delete_all_cookies()
        page.open(url)
        if who is not None:
            page.wait("#login-form")
            assert page.path().startswith("/login?next="), (url, page.path())
            page.login(who.username, who.password)
            WebDriverWait(page.driver, WAIT_S).until(lambda d: "/login" not in d.current_url)
        page.wait(css)
        landed = unquote(page.path())
        assert lands(landed), f"{url} landed on {landed}"
        assert page.driver.find_element(By.TAG_NAME, "h1").text.strip()
        page.shot(name)

    def back_to(url: str) -> Callable[[str], bool]:
        wanted = unquote(url.removeprefix(base))
        return lambda landed: landed == wanted

    followed: dict[str, int] = {}
    for kind, who, mail in mails:
        links = links_of(mail)
        assert links, f"the {kind} mail has no link"
        for link in links:
            assert link.startswith(base + "/"), f"{kind}: {link} is not on the portal"
            path = urlsplit(link).path
            followed[kind] = followed.get(kind, 0) + 1
            match kind:
                case "share":
                    uid = path.rsplit("/", 1)[1]
                    assert uid in (one, two) and f"bucket={c['shared']}" in link
                    expect(link, who, "#study-details", back_to(link), "share-study")
                    heading = page.driver.find_element(By.TAG_NAME, "h1").text
                    assert heading == ("CT links one" if uid == one else "MR links two")
                    assert "Links test" in page.driver.find_element(By.ID, "share-message").text
                case "share (anonymized)":
                    assert path == "/shared-with-me/1"
                    expect(
                        link,
                        who,
                        "#study-details",
                        lambda landed: (
                            landed.startswith("/studies/")
                            and landed.endswith(f"?bucket={c['anonymized']}")
                            and w.glass.study_uid not in landed
                        ),
                        "anonymized-study",
                    )
                    details = page.driver.find_element(By.ID, "study-details").text
                    assert "Anonymous" in details, details
                    assert "CT links glass" not in page.driver.page_source
                case "invitation":
                    assert path == "/register"
                    expect(link, None, "#register-form", back_to(link), "invitation-register")
                    email = page.driver.find_element(By.NAME, "email").get_attribute("value")
                    assert email == c["invited"] and page.has("#invited")
                case "bucket_locked":
                    assert path == f"/shares/{c['locked']}"
                    expect(link, who, "#bucket-status", back_to(link), "locked-share")
                    assert c["locked"] in page.driver.find_element(By.TAG_NAME, "h1").text
                    assert page.has("#unlock"), "the admin can unlock it from there"
                case "break_the_glass":
                    assert path == f"/studies/{w.glass.study_uid}/logging"
                    expect(link, who, "#study-logging", back_to(link), "break-glass-logging")
                case "group_invitation":
                    assert path == "/group-invitations"
                    expect(link, who, "#group-invitations", back_to(link), "group-invitations")
                    page.wait_text(c["group_name"])
                    assert page.has("#group-invitations button.accept-invitation")
                case "registration_pending":
                    assert path == f"/users/{c['registered']}"
                    expect(link, who, "#user-details", back_to(link), "pending-registration")
                    assert c["registrant"] in page.driver.find_element(By.TAG_NAME, "h1").text
                case "group_composition_reported":
                    assert path == f"/groups/{c['group']}"
                    expect(link, who, "#group-members", back_to(link), "composition-reported")
                    page.wait_text(c["group_name"])
                case "identity_linked":
                    assert path == "/profile"
                    expect(link, who, "#eid-link", back_to(link), "identity-linked-profile")
                case "group_confirmation_due":
                    assert path == "/group-confirmations"
                    expect(link, who, "#group-confirmations", back_to(link), "confirmations")
                    page.wait_text(c["group_name"])
                case _:
                    pytest.fail(f"no check for the links of the {kind} mail")
    assert followed["share"] == 2, "one link per study of the share"
    print(f"followed {sum(followed.values())} links of {len(mails)} mails", followed)
    print(f"mail links test took {time.monotonic() - started:.1f}s")
