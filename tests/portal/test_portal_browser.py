"""The core journey of issue 14, clicked through in headless chromium.

A physician logs in, selects two studies in the list and shares them (two-factor, anonymized,
a message) with a colleague through the share dialog; the colleague follows the link of the
caught mail, logs in, lands back on the study, asks for the SMS code and enters it, and sees
the images and the message but not the report; the page switches to Dutch; a patient logs in
with a reference number, birth date and pincode and sees only their study.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from studyshare.devstack.platform import LocalPlatform

from ..storykit import OTP_CODE, Gateway, ok, unique, wait_for

BIRTH_DATE = "19800214"
PATIENT_PINCODE = "602517"
REPORT = "Confidential finding: only for the department."
MESSAGE = "Please look at the lesion in the left lung."
WAIT_S = 60


@pytest.fixture(scope="module")
def cast(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
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
    study = api.upload(sender, "CT thorax", "Portal^Alice", BIRTH_DATE)
    other = api.upload(sender, "MR knee", "Portal^Oscar", BIRTH_DATE)
    ok(
        api.client.put(
            f"/api/studies/{study.study_uid}/report", json={"text": REPORT}, headers=sender.headers
        )
    )
    return SimpleNamespace(
        admin=admin, sender=sender, colleague=colleague, study=study, other=other
    )


class Page:
    """One browser on the portal: waits, fills, clicks and saves a screenshot per step."""

    def __init__(self, driver: webdriver.Chrome, base: str, shots: Path, who: str) -> None:
        self.driver, self.base, self.shots, self.who = driver, base.rstrip("/"), shots, who
        self.count = 0

    def open(self, path_or_url: str) -> None:
        url = path_or_url if path_or_url.startswith("http") else self.base + path_or_url
        self.driver.get(url)

    def wait(self, css: str, timeout: float = WAIT_S):
        try:
            return WebDriverWait(self.driver, timeout).until(
                ec.visibility_of_element_located((By.CSS_SELECTOR, css))
            )
        except TimeoutException:
            self.shot(f"timeout-waiting-for-{re.sub(r'[^a-z]+', '-', css)}")
            raise

    def attribute(self, css: str, name: str, timeout: float = WAIT_S) -> str:
        """An attribute of the element `css`, read again if htmx swapped the element between
        finding and reading it."""
        return WebDriverWait(
            self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
        ).until(lambda d: d.find_element(By.CSS_SELECTOR, css).get_attribute(name))

    def wait_text(self, text: str, timeout: float = WAIT_S) -> None:
        WebDriverWait(self.driver, timeout).until(lambda d: text in d.page_source)

    def wait_text_in(self, css: str, text: str, timeout: float = WAIT_S) -> None:
        """Until the element `css` shows `text`: not just any part of the page (the page
        before a form's answer may name it too), and read again if it was swapped."""
        WebDriverWait(
            self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
        ).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def fill(self, name: str, value: str) -> None:
        field = self.driver.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)

    def set_value(self, name: str, value: str) -> None:
        """Date inputs take their typed value per locale; set the ISO value directly."""
        field = self.driver.find_element(By.NAME, name)
        self.driver.execute_script("arguments[0].value = arguments[1]", field, value)

    def click(self, css: str) -> None:
        self.wait(css).click()

    def has(self, css: str) -> bool:
        try:
            self.driver.find_element(By.CSS_SELECTOR, css)
        except NoSuchElementException:
            return False
        return True

    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base)

    def shot(self, name: str) -> None:
        self.count += 1
        self.driver.save_screenshot(str(self.shots / f"{self.who}-{self.count:02d}-{name}.png"))

    def login(self, username: str, password: str) -> None:
        self.wait("#login-form")
        self.fill("username", username)
        self.fill("password", password)
        self.shot("login")
        self.driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()


def images_loaded(page: Page) -> None:
    """Every image of the study page decoded (naturalWidth > 0), none broken."""
    WebDriverWait(page.driver, WAIT_S).until(
        lambda d: d.execute_script(
            "const all = Array.from(document.querySelectorAll('#images img'));"
            "return all.length > 0 && all.every(i => i.complete && i.naturalWidth > 0)"
        )
    )


def test_share_follow_the_mail_two_factor_images_dutch_and_patient(
    api: Gateway,
    cast: SimpleNamespace,
    platform: LocalPlatform,
    browser_factory: Callable[[], webdriver.Chrome],
    screenshots: Path,
) -> None:
    uid = cast.study.study_uid
    base = platform.gateway_url

    # -- the physician logs in and shares through the dialog ----------------------------
    sender = Page(browser_factory(), base, screenshots, "1-physician")
    sender.open("/")
    assert sender.path().startswith("/login")
    headers = sender.driver.execute_script("return document.contentType")
    assert headers == "text/html"
    sender.login(cast.sender.username, cast.sender.password)
    sender.wait("#own-studies")
    sender.wait_text("CT thorax")
    sender.wait_text("MR knee")
    sender.shot("study-list")
    for box in sender.driver.find_elements(By.CSS_SELECTOR, "#own-studies input[name=study]"):
        if box.get_attribute("value") in (uid, cast.other.study_uid):
            box.click()
    sender.click("#share-selected-button")
    sender.wait("#share-form")
    chosen = sender.driver.find_elements(By.CSS_SELECTOR, "#share-form input[name=study]")
    assert sorted(e.get_attribute("value") for e in chosen) == sorted(
        [uid, cast.other.study_uid]
    ), "the two selected studies, in one share"
    search = sender.driver.find_element(By.ID, "recipient-search")
    search.send_keys(cast.colleague.username.split(".")[0])
    sender.click("#recipient-results button.result")
    sender.wait("#chosen .chip")
    sender.fill("reason", "second opinion")
    sender.fill("message", MESSAGE)
    for box in ("patient_agreed", "two_factor", "anonymize", "urgent"):
        element = sender.driver.find_element(By.NAME, box)
        if not element.is_selected():
            element.click()
    sender.fill("label", "lung")
    sender.shot("share-dialog")
    bucket = ""
    for _ in range(10):  # the share service may not know a study of a second ago yet
        sender.driver.find_element(By.ID, "share-submit").click()
        WebDriverWait(sender.driver, WAIT_S).until(
            lambda d: (
                d.find_elements(By.ID, "share-confirmation")
                or d.find_elements(By.ID, "share-problem")
            )
        )
        if sender.has("#share-confirmation"):
            href = sender.driver.find_element(By.ID, "bucket-link").get_attribute("href")
            bucket = href.rsplit("/", 1)[1]
            break
        problem = sender.driver.find_element(By.ID, "share-problem").text
        assert "not known" in problem.lower() or "unknown" in problem.lower(), problem
        time.sleep(1)
    assert bucket.startswith("bkt_")
    assert MESSAGE in sender.driver.find_element(By.ID, "confirmation-text").text
    sender.click("#copy-confirmation")
    sender.wait("#copied")
    sender.shot("share-confirmation")
    sender.open(f"/shares/{bucket}")
    sender.wait("#bucket-status")
    sender.shot("share-page")
    sender.click("#logout")
    sender.wait("#login-form")

    # -- the colleague follows the link of the mail -------------------------------------
    mail = api.mail_about(cast.colleague.email, bucket)
    link = next(link for link in mail["links"] if f"bucket={bucket}" in link)
    recipient = Page(browser_factory(), base, screenshots, "2-recipient")
    recipient.open(link)
    recipient.wait("#login-form")
    assert recipient.path().startswith("/login?next=")
    recipient.login(cast.colleague.username, cast.colleague.password)
    recipient.wait("#two-factor")
    # an anonymized share: the mail names the study by its place, the page by its remapped UID
    assert link.endswith(f"/shared-with-me/1?bucket={bucket}")
    opened = recipient.path()
    assert opened.startswith("/studies/") and opened.endswith(f"?bucket={bucket}")
    assert uid not in opened and uid not in recipient.driver.page_source
    assert MESSAGE in recipient.driver.find_element(By.ID, "share-message").text
    recipient.shot("two-factor")
    before = {s["id"] for s in api.sms_to(cast.colleague.mobile)}
    recipient.click("#otp-request")
    sms = wait_for(
        lambda: [s for s in api.sms_to(cast.colleague.mobile) if s["id"] not in before],
        "the SMS with the code",
    )
    code = OTP_CODE.search(sms[0]["text"]).group(1)
    recipient.wait("#otp-form")
    recipient.fill("code", "000000" if code != "000000" else "111111")
    recipient.click("#otp-verify")
    recipient.wait_text("1 of 5")  # the API's reason, shown on the page
    recipient.shot("two-factor-wrong-code")
    recipient.fill("code", code)
    recipient.click("#otp-verify")
    recipient.wait("#images img")
    images_loaded(recipient)
    assert MESSAGE in recipient.driver.find_element(By.ID, "share-message").text
    assert not recipient.has("#report"), "an anonymized share never shows the report"
    assert REPORT not in recipient.driver.page_source
    assert "Portal" not in recipient.driver.find_element(By.ID, "study-details").text
    recipient.shot("study-with-images")

    recipient.open("/studies")
    recipient.wait("#shared-studies")
    recipient.wait_text("Anonymous")
    page = recipient.driver.page_source
    assert page.count("Anonymous") >= 2, "both studies of the share, each under the pseudonym"
    assert "CT thorax" not in page and "MR knee" not in page, "Annex E: no study description"
    recipient.shot("study-list")
    recipient.click("button.lang[value=nl]")
    recipient.wait_text("Met mij gedeeld")
    assert recipient.driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl"
    recipient.shot("study-list-dutch")
    recipient.open(opened)
    recipient.wait_text("Bericht van de afzender")
    recipient.shot("study-dutch")
    recipient.driver.set_window_size(390, 844)  # a phone
    recipient.shot("study-phone")
    recipient.open("/studies")
    recipient.wait("#shared-studies")
    recipient.shot("study-list-phone")

    # -- a patient with a reference number ----------------------------------------------
    issued = ok(
        api.client.post(
            f"/api/studies/{uid}/reference-numbers", json={}, headers=cast.admin.headers
        ),
        201,
    )
    number = issued["reference_number"]
    ok(
        api.client.put(
            f"/api/studies/{uid}/reference-numbers/{issued['reference_id']}/pincode",
            json={"pincode": PATIENT_PINCODE},
            headers=cast.admin.headers,
        ),
        204,
    )
    birth = f"{BIRTH_DATE[:4]}-{BIRTH_DATE[4:6]}-{BIRTH_DATE[6:]}"

    def pincode_asked() -> bool:
        """Identity learnt the number and opened its sealed pincode (from the study store's
        events); asking without a pincode is no guess and counts nothing."""
        body = {"reference_number": number, "date_of_birth": birth}
        r = api.client.post("/api/auth/patient-login", json=body)
        return r.status_code == 401 and r.json().get("rule") == "PincodeRequired"

    wait_for(pincode_asked, "the reference number and its pincode known to identity", WAIT_S)
    patient = Page(browser_factory(), base, screenshots, "3-patient")
    patient.open("/patient-login")
    patient.wait("#patient-login-form")
    patient.fill("reference_number", number)
    patient.set_value("date_of_birth", birth)
    patient.shot("patient-login")
    patient.driver.find_element(By.CSS_SELECTOR, "#patient-login-form button").click()
    patient.wait("input[name=pincode]")  # the pincode handed over after payment
    patient.fill("pincode", PATIENT_PINCODE)
    patient.shot("patient-pincode")
    patient.driver.find_element(By.CSS_SELECTOR, "#patient-login-form button").click()
    patient.wait("#study-details")
    assert patient.path() == f"/studies/{uid}"
    patient.wait("#images img")
    images_loaded(patient)
    patient.shot("own-study")
    patient.open("/studies")
    patient.wait("#study-details")
    assert patient.path() == f"/studies/{uid}", "a patient's list is their one study"
    patient.open(f"/studies/{cast.other.study_uid}")
    patient.wait("#refused")
    assert not patient.has("#break-glass")
    assert not re.search("MR knee", patient.driver.page_source)
    patient.shot("other-study-refused")
