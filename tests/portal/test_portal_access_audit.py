"""Issue 14 point 5, clicked through in headless chromium: five wrong codes lock a share, the
department admin unlocks it on the study's Access tab (and issues a reference number with a
pincode there), the recipient gets in with a fresh code, the sender withdraws the access on
the Access tab, and an auditor finds every step in the study logging, looks at who could open
the study, the alerts, the chain check and downloads the exports. Every page is saved as a
screenshot, also at a phone's width."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from studyshare.devstack.platform import LocalPlatform

from ..storykit import OTP_CODE, Gateway, about_bucket, anything, by_actor, unique, wait_for
from .test_portal_browser import WAIT_S, Page, images_loaded

BIRTH_DATE = "19750322"
PHONE = (390, 844)
DESKTOP = (1280, 1000)
PINCODE = "4711"


@pytest.fixture(scope="module")
def people(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department = api.radiology_department(desk, unique("Radiology "))
    admin = api.register(
        desk,
        "Rita",
        roles=["department_admin", "department_staff"],
        department_ids=[department],
        admin_of=[department],
    )
    sender = api.register(admin.headers, "Pieter", roles=["physician"], department_ids=[department])
    colleague = api.register(desk, unique("Claire"), roles=["physician"], language="en")
    auditor = api.register(desk, "Audrey", roles=["auditor"])
    study = api.upload(sender, "CT thorax", "Access^Alice", BIRTH_DATE)
    bucket = api.shared(
        sender,
        study_uids=[study.study_uid],
        recipients=[{"kind": "user", "id": colleague.user_id}],
        access_level="images_report_read",
        two_factor=True,
        message="Please compare with last year.",
    )
    return SimpleNamespace(
        admin=admin,
        sender=sender,
        colleague=colleague,
        auditor=auditor,
        study=study,
        bucket=bucket,
    )


def reload_until(page: Page, path: str, css: str, what: str, timeout: float = WAIT_S) -> None:
    """Open `path` again until `css` is on it (the services learn of events within seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        page.open(path)
        if page.has(css):
            return
        if time.monotonic() > deadline:
            page.shot(f"timeout-{what}")
            raise AssertionError(f"{path} never showed {css} ({what})")
        time.sleep(1)


def phone_shot(page: Page, name: str) -> None:
    page.driver.set_window_size(*PHONE)
    page.shot(f"{name}-phone")
    page.driver.set_window_size(*DESKTOP)


def code_by_sms(api: Gateway, page: Page, mobile: str) -> str:
    """Click "send me a code" and read the code from the SMS caught for `mobile`."""
    before = {s["id"] for s in api.sms_to(mobile)}
    page.click("#otp-request")
    sms = wait_for(
        lambda: [s for s in api.sms_to(mobile) if s["id"] not in before], "the SMS with the code"
    )
    return OTP_CODE.search(sms[0]["text"]).group(1)


def test_a_locked_share_is_unlocked_on_the_access_tab_and_the_auditor_finds_every_step(
    api: Gateway,
    people: SimpleNamespace,
    platform: LocalPlatform,
    browser_factory: Callable[[], webdriver.Chrome],
    screenshots: Path,
) -> None:
    uid, bucket = people.study.study_uid, people.bucket
    base = platform.gateway_url
    study_page = f"/studies/{uid}?bucket={bucket}"

    # -- the recipient enters five wrong codes: the share locks ---------------------------
    recipient = Page(browser_factory(), base, screenshots, "4-recipient")
    recipient.open(study_page)
    recipient.login(people.colleague.username, people.colleague.password)
    recipient.wait("#two-factor")
    code = code_by_sms(api, recipient, people.colleague.mobile)
    wrong = "000000" if code != "000000" else "111111"
    for attempt in range(1, 6):
        recipient.wait("#otp-form")
        recipient.fill("code", wrong)
        recipient.click("#otp-verify")
        if attempt < 5:
            recipient.wait_text(f"{attempt} of 5")
    reload_until(recipient, study_page, "#locked", "the locked share")
    assert not recipient.has("#otp-form")
    recipient.shot("locked")

    # -- the department admin unlocks it on the study's Access tab ------------------------
    admin = Page(browser_factory(), base, screenshots, "5-department-admin")
    admin.open(f"/studies/{uid}")
    admin.login(people.admin.username, people.admin.password)
    admin.wait("#study-details")
    admin.click("#tab-access")
    admin.wait("#access-tab")
    assert admin.path() == f"/studies/{uid}/access"
    row = admin.wait(f"#bucket-{bucket}")
    assert row.get_attribute("data-state") == "locked"
    grant = admin.wait(f"tr.grant[data-recipient='{people.colleague.user_id}']")
    assert grant.get_attribute("data-state") == "locked"
    assert "Claire" in grant.text and "Pieter Story" in grant.text  # names, not ids
    admin.shot("access-tab-locked")
    phone_shot(admin, "access-tab-locked")
    admin.click(f"#unlock-{bucket}")
    admin.wait_text("The bucket is unlocked.")
    assert admin.wait(f"#bucket-{bucket}").get_attribute("data-state") == "active"
    admin.shot("access-tab-unlocked")
    admin.click("button.lang[value=nl]")
    admin.wait_text("Toegang tot het onderzoek")
    assert admin.wait(f"#bucket-{bucket}").text.count("actief") == 1
    admin.shot("access-tab-dutch")
    admin.click("button.lang[value=en]")
    admin.wait_text("Access to the study")

    # ... and issues a reference number with a pincode there
    admin.click("#issue")
    admin.wait_text("A reference number is issued.")
    number_row = admin.wait("#reference-numbers tr.reference")
    number = number_row.get_attribute("data-reference")
    admin.fill("pincode", "12")  # too short: the API's reason is shown next to the field
    number_row.find_element(By.CSS_SELECTOR, ".pincode-form button").click()
    problem = admin.wait("#reference-numbers .field-problem")
    assert "pincode" in problem.text.lower(), problem.text
    admin.shot("access-tab-pincode-refused")
    admin.fill("pincode", PINCODE)
    admin.wait(f"tr.reference[data-reference='{number}'] .pincode-form button").click()
    admin.wait_text("The pincode is registered.")
    assert "registered" in admin.wait(f"tr.reference[data-reference='{number}']").text
    admin.shot("access-tab-reference-number")
    phone_shot(admin, "access-tab-reference-number")

    # -- the recipient asks a fresh code and gets in ---------------------------------------
    reload_until(recipient, study_page, "#two-factor", "the unlocked share")
    code = code_by_sms(api, recipient, people.colleague.mobile)
    recipient.wait("#otp-form")
    recipient.fill("code", code)
    recipient.click("#otp-verify")
    recipient.wait("#images img")
    images_loaded(recipient)
    assert not recipient.has("#tab-access"), "a plain recipient is offered no Access tab"
    recipient.shot("unlocked-images")

    # -- the sender withdraws the access on the Access tab --------------------------------
    sender = Page(browser_factory(), base, screenshots, "6-sender")
    sender.open(f"/studies/{uid}/access")
    sender.login(people.sender.username, people.sender.password)
    grant = sender.wait(f"tr.grant[data-recipient='{people.colleague.user_id}']")
    assert grant.get_attribute("data-state") == "active"
    assert not sender.has("#reference-numbers"), "a physician does not manage reference numbers"
    assert "Pieter Story" in sender.wait("#exam-owner").text, "the owner under 'Exam owner'"
    sender.shot("access-tab")
    sender.click(f"#revoke-{bucket}")  # the cross asks: this study, or the full bucket?
    sender.wait(f"#bucket-{bucket} .remove-study")
    assert sender.wait(f"#bucket-{bucket} .revoke-bucket").is_displayed()
    sender.shot("access-tab-revoke-choice")
    grant.find_element(By.CSS_SELECTOR, "button.withdraw").click()
    sender.wait_text("The access is withdrawn.")
    withdrawn = sender.wait(f"tr.grant[data-recipient='{people.colleague.user_id}']")
    assert withdrawn.get_attribute("data-state") == "revoked"
    assert not withdrawn.find_elements(By.CSS_SELECTOR, "button.withdraw")
    sender.shot("access-withdrawn")
    reload_until(recipient, study_page, "#refused", "the withdrawn access")
    recipient.shot("withdrawn")

    # -- the auditor finds every step in the study logging --------------------------------
    colleague, admin_id = people.colleague.user_id, people.admin.user_id
    api.logged(
        people.auditor,
        uid,
        [
            ("StudyShared", about_bucket(bucket)),
            ("OTPRequested", about_bucket(bucket)),
            ("OTPFailed", about_bucket(bucket)),
            ("BucketLocked", about_bucket(bucket)),
            ("BucketUnlocked", by_actor(admin_id)),
            ("OTPVerified", by_actor(colleague)),
            ("StudyAccessed", by_actor(colleague)),
            ("AccessRevoked", by_actor(people.sender.user_id)),
            ("ReferenceNumberIssued", anything),
            ("PincodeSet", anything),
        ],
        timeout=WAIT_S,
    )
    auditor = Page(browser_factory(), base, screenshots, "7-auditor")
    auditor.open("/audit")
    auditor.login(people.auditor.username, people.auditor.password)
    auditor.wait("#audit-home")
    assert auditor.has("#nav-audit")
    auditor.shot("audit-home")
    auditor.fill("uid", uid)
    auditor.driver.find_element(By.CSS_SELECTOR, "#open-study button").click()
    auditor.wait("#study-logging")
    assert auditor.path() == f"/studies/{uid}/logging"
    auditor.wait("#log-entries")
    auditor.shot("study-logging")
    phone_shot(auditor, "study-logging")
    steps = {
        "share": ["StudyShared"],
        "otp": ["OTPRequested", "OTPVerified"],
        "otp_failure": ["OTPFailed"] * 5,
        "lock": ["BucketLocked"],
        "unlock": ["BucketUnlocked"],
        "revocation": ["AccessRevoked"],
        "reference_number": ["ReferenceNumberIssued", "PincodeSet"],
        "view": ["StudyAccessed"],
    }
    for category, expected in steps.items():
        Select(auditor.driver.find_element(By.ID, "filter-category")).select_by_value(category)
        auditor.click("#filter-submit")
        WebDriverWait(auditor.driver, WAIT_S).until(
            lambda d, c=category: d.current_url.endswith(
                f"category={c}&event_type=&actor=&from=&to="
            )
        )
        auditor.wait("#log-total")
        shown = [
            e.get_attribute("data-event")
            for e in auditor.driver.find_elements(By.CSS_SELECTOR, "#log-entries tr.entry")
        ]
        for event_type in set(expected):
            assert shown.count(event_type) >= expected.count(event_type), (category, shown)
        assert {
            e.get_attribute("data-category")
            for e in auditor.driver.find_elements(By.CSS_SELECTOR, "#log-entries tr.entry")
        } == {category}
        if category in ("otp_failure", "lock"):
            auditor.shot(f"study-logging-{category}")

    # who could open the study a moment ago, the alerts, the chain, the exports
    auditor.click("#tab-logging")
    auditor.click("#to-access-at")
    auditor.wait("#access-at-form")
    moment = auditor.driver.execute_script(  # as the auditor types it: Brussels time
        "return new Date(Date.now() - 1000)"
        ".toLocaleString('sv-SE', {timeZone: 'Europe/Brussels'}).replace(' ', 'T')"
    )
    auditor.set_value("t", moment)
    auditor.click("#access-at-submit")
    auditor.wait("#could-open")
    openers = {
        e.get_attribute("data-principal")
        for e in auditor.driver.find_elements(By.CSS_SELECTOR, "tr.could-open")
    }
    assert people.sender.user_id in openers and colleague not in openers  # withdrawn by now
    auditor.shot("access-at")
    auditor.open("/audit/alerts")
    auditor.wait("#alert-list")
    assert auditor.has(f"#alert-list a[href='/studies/{uid}/logging']")
    assert auditor.has("tr.alert-row[data-kind='bucket_locked']")
    auditor.shot("alerts")
    auditor.open("/audit/verify")
    assert auditor.wait("#verify-result").get_attribute("data-ok") == "true"
    auditor.shot("verify")
    auditor.open(f"/studies/{uid}/logging")
    for kind, media in (("fhir", "application/fhir+json"), ("dicom", "application/xml")):
        href = auditor.wait(f"#export-{kind}").get_attribute("href")
        fetched = auditor.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(async r => done([r.status, r.headers.get('content-type'),"
            " r.headers.get('content-disposition'), (await r.text()).length]))",
            href,
        )
        status, content_type, disposition, size = fetched
        assert status == 200 and content_type.startswith(media), fetched
        assert disposition.startswith("attachment;") and size > 100, fetched
