"""The account pages of issue 14 clicked through in headless chromium, against the whole
platform: an invited newcomer registers from the mail's link, the service desk approves, the
newcomer logs in and accepts the invitation; a group is created, a colleague invited by the
type-ahead accepts from the mail's link; the profile switches language, enrols an
authenticator app (the code computed by `oathtool` from the secret on the page), changes the
mobile number with the SMS code and links the (demo) eID, which then logs in with the TOTP
step; the service desk unlocks the account and removes its second factor; the study list
filters, the share dialog's favourites, "my shares", and an account of another environment.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, ok, unique, wait_for
from .test_portal_browser import WAIT_S, Page

PHONE = (390, 844)
NATIONAL_NUMBER = "85.07.30-033.28"


@pytest.fixture(scope="module")
def people(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department = api.radiology_department(desk, unique("Radiology "))
    sender = api.register(desk, "Sara", roles=["physician"], department_ids=[department])
    colleague_name = unique("Bram")
    colleague = api.register(desk, colleague_name, roles=["physician"])
    study = api.upload(sender, "CT thorax", "Account^Anna", "19700101")
    return SimpleNamespace(
        desk=desk, sender=sender, colleague=colleague, colleague_name=colleague_name, study=study
    )


def oathtool(secret: str, at: float | None = None) -> str:
    """The authenticator's code for `secret` (Debian's oathtool), now or at `at`."""
    when = ["-N", f"@{int(at)}"] if at is not None else []
    return subprocess.run(
        ["oathtool", "--totp", "-b", *when, secret], check=True, capture_output=True, text=True
    ).stdout.strip()


def next_step_code(secret: str) -> str:
    """A code of the next 30-second step (the API accepts one step of drift and never a step
    already used, as the enrolment's was)."""
    return oathtool(secret, time.time() + 30)


def click_in_row(page: Page, row_text: str, button_css: str) -> None:
    """The button of the list row that mentions `row_text`."""
    rows = page.driver.find_elements(By.XPATH, f"//li[contains(., {row_text!r})]")
    assert rows, f"no row with {row_text!r}"
    rows[0].find_element(By.CSS_SELECTOR, button_css).click()


def log_in_as(page: Page, username: str, password: str, path: str = "/studies") -> None:
    page.open(path)
    page.login(username, password)
    WebDriverWait(page.driver, WAIT_S).until(lambda d: "/login" not in d.current_url)


def test_an_invited_newcomer_registers_the_desk_approves_and_the_invitation_opens(
    api: Gateway,
    people: SimpleNamespace,
    platform: LocalPlatform,
    browser_factory: Callable[[], webdriver.Chrome],
    screenshots: Path,
) -> None:
    uid = people.study.study_uid
    email = f"{unique('nele.')}@invited.studyshare.test"
    bucket = api.shared(
        people.sender,
        study_uids=[uid],
        recipients=[{"kind": "email", "email": email}],
        access_level="images_report_read",
        message="Welcome to StudyShare",
    )
    mail = api.mail_about(email, bucket)
    link = next(link for link in mail["links"] if "/register?" in link)

    newcomer = Page(browser_factory(), platform.gateway_url, screenshots, "4-newcomer")
    newcomer.open(link)
    newcomer.wait("#register-form")
    assert newcomer.driver.find_element(By.NAME, "email").get_attribute("value") == email
    assert newcomer.has("#invited")
    username, password = unique("nele."), "Newcomer-pass-42"
    for name, value in (
        ("first_name", "Nele"),
        ("last_name", "Nieuwkomer"),
        ("mobile", "+32 470 55 66 77"),
        ("physician_number", "1-23456-78-901"),
        ("username", username),
        ("password", f"my-{username}-password"),  # contains the username: the API refuses
    ):
        newcomer.fill(name, value)
    newcomer.shot("register")
    newcomer.click("#register-submit")
    newcomer.wait("#error-password")  # the API's reason, beside the field
    newcomer.shot("register-refused")
    newcomer.fill("password", password)
    newcomer.click("#register-submit")
    newcomer.wait("#registered")
    newcomer.shot("registered")

    desk = Page(browser_factory(), platform.gateway_url, screenshots, "5-desk")
    log_in_as(desk, platform.bootstrap_user, platform.bootstrap_password)
    desk.click("#nav-desk")
    desk.wait("#pending-registrations")
    desk.wait_text("Nieuwkomer")
    desk.shot("desk-pending")
    click_in_row(desk, "Nieuwkomer", "button.approve-registration")
    desk.wait(".notice")
    assert "Nieuwkomer" not in desk.driver.find_element(By.ID, "pending-registrations").text
    desk.shot("desk-approved")

    newcomer.click("#registered-login")
    newcomer.login(username, password)
    newcomer.wait("#invitation")
    assert unquote(newcomer.path()).startswith("/register?email=")
    newcomer.shot("invitation")
    newcomer.click("#accept-invitation")
    newcomer.wait("#study-details")
    assert newcomer.path() == f"/studies/{uid}?bucket={bucket}"
    assert "Welcome to StudyShare" in newcomer.driver.find_element(By.ID, "share-message").text
    newcomer.shot("invitation-accepted-study")
    newcomer.open("/studies")
    newcomer.wait("#shared-studies")
    newcomer.wait_text("CT thorax")


def test_a_group_is_created_a_colleague_invited_and_accepting_from_the_mail(
    api: Gateway,
    people: SimpleNamespace,
    platform: LocalPlatform,
    browser_factory: Callable[[], webdriver.Chrome],
    screenshots: Path,
) -> None:
    name = unique("Praktijk ")
    founder = Page(browser_factory(), platform.gateway_url, screenshots, "6-group-founder")
    log_in_as(founder, people.sender.username, people.sender.password)
    founder.click("#nav-groups")
    founder.wait("#create-group-form")
    founder.shot("my-groups-empty")
    founder.fill("name", name)
    founder.click("#create-group-submit")
    founder.wait("#group-members")
    group_id = founder.path().rsplit("/", 1)[1]
    search = founder.driver.find_element(By.ID, "member-search")
    search.send_keys(people.colleague_name)
    founder.click("#member-results .invite-candidate")
    founder.wait("#group-invited")
    founder.shot("group-invited")

    mail = api.mail_about(people.colleague.email, name)
    link = next(link for link in mail["links"] if link.endswith("/group-invitations"))
    member = Page(browser_factory(), platform.gateway_url, screenshots, "7-group-member")
    member.open(link)
    member.login(people.colleague.username, people.colleague.password)
    member.wait("#group-invitations")
    member.wait_text(name)
    member.shot("invitations")
    click_in_row(member, name, "button.accept-invitation")
    member.wait("#group-members")
    assert member.path() == f"/groups/{group_id}"
    members = member.driver.find_element(By.ID, "group-members").text
    assert "Sara" in members and people.colleague_name in members
    member.shot("group")
    member.open("/group-confirmations")
    member.wait("#group-confirmations")
    member.wait_text(name)
    member.shot("group-confirmations")
    member.driver.set_window_size(*PHONE)
    member.open(f"/groups/{group_id}")
    member.wait("#group-members")
    member.shot("group-phone")

    founder.open(f"/groups/{group_id}")
    founder.wait("#group-members")
    assert not founder.has("#group-invited"), "accepted: no open invitation left"


def test_profile_language_totp_mobile_and_eid_then_the_desk_unlocks_and_removes_totp(
    api: Gateway,
    people: SimpleNamespace,
    platform: LocalPlatform,
    browser_factory: Callable[[], webdriver.Chrome],
    screenshots: Path,
) -> None:
    person = api.register(people.desk, unique("Tom"), roles=["physician"])
    me = Page(browser_factory(), platform.gateway_url, screenshots, "8-profile")
    log_in_as(me, person.username, person.password)
    me.click("#nav-profile")
    me.wait("#profile-language")
    Select(me.driver.find_element(By.ID, "profile-language-select")).select_by_value("de")
    me.click("#save-language")
    me.wait_text("Mein Profil")
    assert me.driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "de"
    me.shot("profile-german")
    assert ok(api.client.get("/api/users/me", headers=person.headers))["language"] == "de"
    Select(me.driver.find_element(By.ID, "profile-language-select")).select_by_value("en")
    me.click("#save-language")
    me.wait_text("My profile")

    start = me.driver.find_element(By.ID, "totp-start-form")
    start.find_element(By.NAME, "current_password").send_keys(person.password)
    me.click("#start-totp")
    me.wait("#totp-qr svg")
    secret = me.driver.find_element(By.ID, "totp-secret").text.strip()
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    me.shot("totp-qr")
    me.fill("code", "000000" if oathtool(secret) != "000000" else "111111")
    me.click("#confirm-totp")
    me.wait("#error-totp_code")
    me.fill("code", oathtool(secret))
    me.click("#confirm-totp")
    me.wait("#totp-on")
    me.shot("totp-on")

    new_mobile = f"+3247{int(unique('')[:6], 16) % 10**7:07d}"
    before = {s["id"] for s in api.sms_to(new_mobile)}
    form = me.driver.find_element(By.ID, "mobile-form")
    form.find_element(By.NAME, "mobile").send_keys(new_mobile)
    form.find_element(By.NAME, "current_password").send_keys(person.password)
    me.click("#request-mobile-code")
    me.wait("#mobile-confirm-form")
    sms = wait_for(
        lambda: [s for s in api.sms_to(new_mobile) if s["id"] not in before], "the SMS code"
    )
    code = re.search(r"\b(\d{6})\b", sms[0]["text"]).group(1)
    me.driver.find_element(By.CSS_SELECTOR, "#mobile-confirm-form input[name=code]").send_keys(code)
    me.shot("mobile-code")
    me.click("#confirm-mobile")
    me.wait_text_in("#profile-mobile", new_mobile)  # the code's page names the number too

    linking = me.driver.find_element(By.ID, "eid-link")
    linking.find_element(By.NAME, "current_password").send_keys(person.password)
    me.click("#link-demo-eid")
    me.wait("#national-number").send_keys(NATIONAL_NUMBER)
    me.shot("demo-eid")
    me.click("#demo-eid-sign-in")
    me.wait("#eid-link")
    assert me.path().startswith("/profile")
    me.wait(".notice")
    me.shot("eid-linked")
    told = api.mail_about(person.email, "demo-eid")  # a new way in: the holder is told
    assert "/profile" in told["text"]
    me.driver.set_window_size(*PHONE)
    me.open("/profile")
    me.wait("#totp-on")
    me.shot("profile-phone")
    me.driver.set_window_size(1280, 1000)
    me.click("#logout")

    me.wait("#eid-login")
    me.shot("login-with-eid")
    me.click("#eid-demo-eid")
    me.wait("#national-number").send_keys(NATIONAL_NUMBER)
    me.click("#demo-eid-sign-in")
    me.wait("#eid-totp-form")  # the account has TOTP: its code after the eID
    me.shot("eid-totp-step")
    me.fill("otp", next_step_code(secret))
    me.driver.find_element(By.CSS_SELECTOR, "#eid-totp-form button").click()
    me.wait("#shared-studies")
    me.shot("logged-in-with-eid")

    for _ in range(5):
        api.client.post(
            "/api/auth/login", json={"username": person.username, "password": "wrong-password"}
        )
    desk = Page(browser_factory(), platform.gateway_url, screenshots, "9-desk")
    log_in_as(desk, platform.bootstrap_user, platform.bootstrap_password, "/desk")
    desk.wait("#locked-accounts")
    desk.wait_text(person.username)
    desk.shot("desk-locked")
    click_in_row(desk, person.username, "button.unlock-account")
    desk.wait(".notice")
    desk.fill("q", person.username)
    desk.click("#find-account-submit")
    desk.wait("#found-accounts a").click()
    desk.wait("#user-details")
    assert "Authenticator app on" in desk.driver.find_element(By.ID, "user-totp").text
    desk.shot("user-page")
    desk.driver.find_element(By.CSS_SELECTOR, "#desk-actions button.danger").click()
    desk.wait(".notice")
    assert "No authenticator app" in desk.driver.find_element(By.ID, "user-totp").text
    desk.driver.set_window_size(*PHONE)
    desk.open("/desk")
    desk.wait("#pending-registrations")
    desk.shot("desk-phone")
    assert (
        api.client.post(
            "/api/auth/login", json={"username": person.username, "password": person.password}
        ).status_code
        == 200
    ), "unlocked, and the password alone logs in again"


def test_filters_favourites_my_shares_and_an_account_of_another_environment(
    api: Gateway,
    people: SimpleNamespace,
    platform: LocalPlatform,
    browser_factory: Callable[[], webdriver.Chrome],
    screenshots: Path,
) -> None:
    uid = people.study.study_uid
    sender = Page(browser_factory(), platform.gateway_url, screenshots, "10-sender")
    log_in_as(sender, people.sender.username, people.sender.password)
    sender.wait("#own-studies")
    sender.driver.find_element(By.CSS_SELECTOR, "#filters summary").click()
    sender.fill("q", "no such study anywhere")
    sender.click("#filter-submit")
    sender.wait("#own-studies")
    assert "CT thorax" not in sender.driver.find_element(By.ID, "own-studies").text
    sender.fill("q", "thorax")
    sender.click("#filter-submit")
    sender.wait_text("CT thorax")
    sender.shot("study-list-filtered")

    colleague_name = people.colleague_name
    sender.open(f"/share?study={uid}")
    sender.wait("#share-form")
    sender.driver.find_element(By.ID, "recipient-search").send_keys(colleague_name)
    sender.click("#recipient-results button.result")
    sender.wait("#chosen .chip .star input").click()
    sender.fill("reason", "second opinion")
    sender.driver.find_element(By.NAME, "patient_agreed").click()
    sender.shot("share-dialog-star")
    for _ in range(10):
        sender.driver.find_element(By.ID, "share-submit").click()
        WebDriverWait(sender.driver, WAIT_S).until(
            lambda d: (
                d.find_elements(By.ID, "share-confirmation")
                or d.find_elements(By.ID, "share-problem")
            )
        )
        if sender.has("#share-confirmation"):
            break
        time.sleep(1)
        if not sender.has("#chosen .chip .star input:checked"):
            sender.driver.find_element(By.CSS_SELECTOR, "#chosen .chip .star input").click()
    bucket = sender.driver.find_element(By.ID, "bucket-link").get_attribute("href").rsplit("/")[-1]
    sender.open(f"/share?study={uid}")
    sender.wait("#favorites")
    assert colleague_name in sender.driver.find_element(By.ID, "favorites").text
    sender.click("#favorites button.fav")
    sender.wait("#chosen .chip")
    sender.shot("share-dialog-favourites")

    sender.open("/studies")
    sender.click("#my-shares-link")
    sender.wait("#my-shares")
    sender.shot("my-shares")
    sender.click(f"#my-shares a[href='/shares/{bucket}']")
    sender.wait("#bucket-status")
    sender.driver.set_window_size(*PHONE)
    sender.open("/shares")
    sender.wait("#my-shares")
    sender.shot("my-shares-phone")

    abroad, password = unique("noor."), "Abroad-pass-42"
    body = {
        "username": abroad,
        "password": password,
        "first_name": "Noor",
        "last_name": "Abroad",
        "environment": "nl",
    }
    ok(api.client.post("/api/users", json=body, headers=people.desk), 201)
    visitor = Page(browser_factory(), platform.gateway_url, screenshots, "11-abroad")
    visitor.open("/login")
    visitor.wait("#login-form")
    visitor.fill("username", abroad)  # before the password: the account's portal is offered
    visitor.driver.find_element(By.NAME, "password").click()
    visitor.wait("#environment-offered")
    offered = visitor.attribute("#environment-offered-link", "href")
    assert offered.startswith("https://nl.")
    visitor.shot("environment-offered")
    visitor.login(abroad, password)
    visitor.wait("#other-environment")
    href = visitor.attribute("#other-environment-link", "href")
    assert href.startswith("https://nl.")
    visitor.shot("other-environment")
    visitor.driver.set_window_size(*PHONE)
    visitor.open("/register")
    visitor.wait("#register-form")
    visitor.shot("register-phone")
