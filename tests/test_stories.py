"""The manuals' stories, end to end, through the gateway only (issue 9, point 1).

A department admin onboards physicians; a physician shares with a colleague and a group practice
under two-factor, anonymized, urgent and with a message; mail arrives in the bucket's language;
wrong one-time passwords, the lock and the unlock; revocation; patient login; re-sharing;
expiry; break-the-glass; and every step in the study logging. Each story uploads its own
studies, so no story's grant opens another story's study.
"""

from __future__ import annotations

import time
from datetime import datetime
from types import SimpleNamespace

import httpx
import pytest

from studyshare.devstack.platform import LocalPlatform

from .storykit import (
    Gateway,
    Person,
    about_bucket,
    anything,
    bucket_steps,
    by_actor,
    in_seconds,
    ok,
    problem,
    refused_now,
    unique,
    wait_for,
)

STUDY_BIRTH_DATE = "19800214"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def cast(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    """The people of the stories: the service desk creates a radiology department and its
    admin; the admin onboards the sending physician; the colleague and the two members of a
    group practice are physicians outside the department."""
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    tag = unique("")
    department_id = api.radiology_department(desk, f"Radiology {tag}")
    admin = api.register(
        desk,
        "Rita",
        roles=["department_admin", "department_staff"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    sender = api.register(
        admin.headers, "Pieter", roles=["physician"], department_ids=[department_id]
    )
    colleague = api.register(desk, "Claire", roles=["physician"], language="nl")
    third = api.register(desk, "Marc", roles=["physician"], language="fr")
    member = api.register(desk, "Sofie", roles=["physician"], language="fr")
    group_id = ok(
        api.client.post(
            "/api/groups",
            json={
                "name": f"Group practice {tag}",
                "primary_contact_id": third.user_id,
                "member_ids": [third.user_id, member.user_id],
            },
            headers=desk,
        ),
        201,
    )["group_id"]
    return SimpleNamespace(
        desk=desk,
        department_id=department_id,
        admin=admin,
        sender=sender,
        colleague=colleague,
        third=third,
        member=member,
        group_id=group_id,
    )


def upload(api: Gateway, cast: SimpleNamespace, description: str, patient: str = "Story^Alice"):
    """A fresh study of the sender's department, uploaded by the sending physician."""
    return api.upload(cast.sender, description, patient, STUDY_BIRTH_DATE)


def write_report(api: Gateway, who: Person, uid: str, text: str) -> None:
    ok(api.client.put(f"/api/studies/{uid}/report", json={"text": text}, headers=who.headers))


def user(person: Person) -> dict[str, str]:
    return {"kind": "user", "id": person.user_id}


# -------------------------------------------------------------------------------- onboarding


def test_department_admin_onboards_physicians_of_their_own_department_only(
    api: Gateway, cast: SimpleNamespace
):
    me = ok(api.client.get("/api/users/me", headers=cast.sender.headers))
    assert me["user_id"] == cast.sender.user_id
    assert me["department_ids"] == [cast.department_id]
    assert me["roles"] == ["physician"]

    other = ok(
        api.client.post(
            "/api/departments",
            json={"name": unique("Elsewhere "), "country": "be", "kind": "radiology"},
            headers=cast.desk,
        ),
        201,
    )["department_id"]
    stranger = {
        "username": unique("stranger."),
        "password": "Story-Stranger-2026!",
        "first_name": "Stan",
        "last_name": "Stranger",
        "roles": ["physician"],
    }
    refused = api.client.post(
        "/api/users", json={**stranger, "department_ids": [other]}, headers=cast.admin.headers
    )
    assert "own departments" in problem(refused, 403, "NotAllowed")["detail"]
    refused = api.client.post(
        "/api/users",
        json={**stranger, "roles": ["service_desk"], "department_ids": [cast.department_id]},
        headers=cast.admin.headers,
    )
    problem(refused, 403, "NotAllowed")
    refused = api.client.post("/api/users", json=stranger, headers=cast.sender.headers)
    problem(refused, 403, "NotAllowed")
    invalid = api.client.post(
        "/api/users", json={**stranger, "username": "x"}, headers=cast.admin.headers
    )
    problem(invalid, 422)


# -------------------------------------------------------------------------------- sharing


def test_share_two_studies_with_colleague_and_group_mail_in_their_language(
    api: Gateway, cast: SimpleNamespace
):
    first = upload(api, cast, "CT thorax")
    second = upload(api, cast, "MR knee")
    initials = ok(api.study(cast.sender, first.study_uid))["patient_initials"]
    assert initials
    message = f"Graag uw advies {unique('')}"

    r = api.share(
        cast.sender,
        study_uids=[first.study_uid, second.study_uid],
        recipients=[user(cast.colleague), {"kind": "group", "id": cast.group_id}],
        access_level="images_report_read",
        two_factor=True,
        anonymize=True,
        urgent=True,
        message=message,
    )
    shared = ok(r, 201)
    bucket_id = shared["bucket_id"]
    c = shared["confirmation"]
    assert c["language"] == "nl", "the language of the first recipient (no majority)"
    assert (c["two_factor"], c["anonymize"], c["urgent"], c["message"]) == (
        True,
        True,
        True,
        message,
    )
    assert c["report_access"] == "none", "an anonymized share never gives the report"
    assert {s["study_uid"] for s in c["studies"]} == {first.study_uid, second.study_uid}
    assert message in shared["confirmation_text"]

    for person in (cast.colleague, cast.third, cast.member):
        mail = api.mail_about(person.email, bucket_id)
        assert mail["subject"].startswith("Dringend: "), mail["subject"]
        assert "2 onderzoeken met u gedeeld" in mail["subject"]
        text = mail["text"]
        assert message in text and "Patiënt: Anoniem" in text
        assert "eenmalig wachtwoord per sms" in text
        assert initials not in text and "Alice" not in text
        assert "second opinion" not in text, "the reason is never shown to a recipient"
        assert sum(1 for link in mail["links"] if f"bucket={bucket_id}" in link) == 2

    mine = ok(api.client.get("/api/shared-with-me", headers=cast.colleague.headers))
    items = [i for i in mine["items"] if i["bucket_id"] == bucket_id]
    shown = {i["study_uid"] for i in items}
    assert len(shown) == 2 and not shown & {first.study_uid, second.study_uid}, (
        "an anonymized share shows its study UIDs remapped (PS3.15 Annex E)"
    )
    for item in items:
        assert item["patient_initials"] == "Anonymous"
        assert (item["message"], item["message_state"]) == (message, "unread")
        assert item["urgent"] and item["two_factor"] and item["report_access"] == "none"

    bucket = ok(api.client.get(f"/api/shares/{bucket_id}", headers=cast.colleague.headers))
    assert bucket["reason"] is None, "a recipient never sees the reason"
    assert ok(api.client.get(f"/api/shares/{bucket_id}", headers=cast.sender.headers))[
        "reason"
    ] == ("second opinion")

    majority = ok(
        api.share(
            cast.sender,
            study_uids=[second.study_uid],
            recipients=[user(cast.colleague), user(cast.third), user(cast.member)],
            access_level="images_report_read",
            two_factor=False,
        ),
        201,
    )
    assert majority["confirmation"]["language"] == "fr", "two of three recipients read French"
    mail = api.mail_about(cast.colleague.email, majority["bucket_id"])
    assert mail["subject"].endswith("a partagé un examen avec vous"), mail["subject"]

    refused = api.share(
        cast.sender,
        study_uids=[first.study_uid],
        recipients=[user(cast.colleague)],
        access_level="images",
    )
    problem(refused, 422, "ImagesOnlyNotAllowedForUser")
    refused = api.share(
        cast.sender,
        study_uids=[first.study_uid],
        recipients=[user(cast.colleague)],
        access_level="images_report_read",
        patient_agreed=False,
    )
    problem(refused, 422, "PatientConsentRequired")

    api.logged(
        cast.admin,
        first.study_uid,
        [
            ("StudyReceived", anything),
            ("StudyShared", about_bucket(bucket_id)),
            ("StudyMessageStored", about_bucket(bucket_id)),
        ],
    )
    # the message is stored with each study as its own series (a DICOM SR), seen over QIDO-RS
    for study in (first, second):
        series = wait_for(
            lambda u=study.study_uid: [
                s
                for s in ok(
                    api.client.get(f"/dicomweb/studies/{u}/series", headers=cast.sender.headers)
                )
                if s["00080060"]["Value"] == ["SR"]
            ],
            "the message series",
        )
        assert len(series) == 1
        wait_for(
            lambda u=study.study_uid: ok(api.study(cast.sender, u))["series_count"] == 2,
            "the message series counted in the study's details",
        )


def test_colleague_enters_four_wrong_otps_then_the_right_one_and_sees_images_not_report(
    api: Gateway, cast: SimpleNamespace
):
    study = upload(api, cast, "CT abdomen")
    uid = study.study_uid
    write_report(api, cast.sender, uid, "No abnormalities.")
    bucket_id = api.shared(
        cast.sender,
        study_uids=[uid],
        recipients=[user(cast.colleague)],
        access_level="images_report_read",
        two_factor=True,
        anonymize=True,
        send_mail=False,
        message="Please compare with the previous exam.",
    )
    colleague = cast.colleague

    def message_state() -> str | None:
        mine = ok(api.client.get("/api/shared-with-me", headers=colleague.headers))
        return next(
            (i["message_state"] for i in mine["items"] if i["bucket_id"] == bucket_id), None
        )

    assert wait_for(message_state, "the share in the colleague's list") == "unread"

    blocked = wait_for(
        lambda: (r := api.study(colleague, uid)).json().get("rule") != "StudyNotFound" and r,
        "the grant in the study store's access model",
    )
    problem(blocked, 403, "TwoFactorVerificationRequired")

    code = api.request_otp(colleague, bucket_id)
    sms = api.sms_to(colleague.mobile)[0]["text"]
    assert sms.startswith("StudyShare: uw eenmalig wachtwoord is "), "in the colleague's Dutch"
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for attempt in range(1, 5):
        body = problem(api.verify_otp(colleague, bucket_id, wrong), 401, "WrongOTP")
        assert f"{attempt} of 5 in a row" in body["detail"]
    verified = ok(api.verify_otp(colleague, bucket_id, code))
    assert datetime.fromisoformat(verified["verified_until"]) > datetime.now().astimezone()
    problem(api.verify_otp(colleague, bucket_id, code), 401, "WrongOTP")  # single use

    detail = ok(
        wait_for(
            lambda: (r := api.study(colleague, uid)).status_code == 200 and r,
            "access after the OTP",
        )
    )
    access = detail["access"]
    assert access["images"] and access["anonymized"] and access["report"] == "none"
    assert detail["patient_initials"] is None and detail["patient_birth_date"] is None
    assert detail["anonymized_name"].endswith(" Anonymous")
    assert detail["has_report"] is False
    problem(api.report(colleague, uid), 403, "ReportNotAvailableOnAnonymizedShare")
    problem(
        api.client.get(f"/api/studies/{uid}/download", headers=colleague.headers),
        403,
        "DownloadNotAllowed",
    )
    wait_for(lambda: message_state() == "read", "the message marked read once the study opened")

    metadata = ok(api.client.get(f"/dicomweb/studies/{uid}/metadata", headers=colleague.headers))
    sop_classes = sorted(i["00080016"]["Value"][0] for i in metadata)
    assert sop_classes == [CT_IMAGE, CT_IMAGE, BASIC_TEXT_SR], (
        "the two CT images, which say they carry no burned-in text, and the message series"
    )
    for instance in metadata:
        name = instance["00100010"]["Value"][0]["Alphabetic"]
        assert name.startswith("Anonymous^") and "Alice" not in name
        assert "00100030" not in instance or not instance["00100030"].get("Value")
    assert ok(api.report(cast.sender, uid))["text"] == "No abnormalities."

    entries = api.logged(
        cast.admin,
        uid,
        [("OTPRequested", about_bucket(bucket_id))]
        + [
            ("OTPFailed", lambda e, n=n: e["payload"].get("consecutive_failures") == n)
            for n in range(1, 5)
        ]
        + [
            ("OTPVerified", by_actor(colleague.user_id, bucket_id=bucket_id)),
            ("StudyAccessed", by_actor(colleague.user_id, action="view", anonymized=True)),
            ("StudyAccessed", by_actor(colleague.user_id, action="metadata")),
            ("ReportUpdated", by_actor(cast.sender.user_id)),
            ("OTPFailed", lambda e: e["aggregate_id"] == bucket_id and e["aggregate_version"] == 8),
        ],
    )
    assert bucket_steps(entries, bucket_id) == [
        "StudyShared",
        "OTPRequested",
        *["OTPFailed"] * 4,
        "OTPVerified",
        "OTPFailed",  # the code entered a second time
    ]


def test_third_party_five_wrong_otps_lock_the_bucket_until_the_department_admin_unlocks(
    api: Gateway, cast: SimpleNamespace
):
    uid = upload(api, cast, "CT brain").study_uid
    bucket_id = api.shared(
        cast.sender,
        study_uids=[uid],
        recipients=[user(cast.colleague), {"kind": "group", "id": cast.group_id}],
        access_level="images_report_read",
        two_factor=True,
        send_mail=False,
    )
    colleague, third = cast.colleague, cast.third
    ok(api.verify_otp(colleague, bucket_id, api.request_otp(colleague, bucket_id)))
    wait_for(lambda: api.study(colleague, uid).status_code == 200, "the colleague's access")

    code = api.request_otp(third, bucket_id)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(4):
        problem(api.verify_otp(third, bucket_id, wrong), 401, "WrongOTP")
    locked = problem(api.verify_otp(third, bucket_id, wrong), 423, "BucketIsLocked")
    assert "5th wrong code" in locked["detail"]
    problem(api.verify_otp(third, bucket_id, code), 423, "BucketIsLocked")
    problem(
        api.client.post(f"/api/shares/{bucket_id}/otp", headers=third.headers),
        423,
        "BucketIsLocked",
    )
    blocked = refused_now(lambda: api.study(colleague, uid), "the lock in the study store")
    problem(blocked, 423, "BucketIsLocked")
    alert = api.mail_about(cast.admin.email, bucket_id)
    assert "locked after 5 wrong one-time passwords" in alert["subject"]

    # the department's locked buckets: listed for its admin, not for a physician of it
    def locked_ids() -> list[str]:
        listed = api.client.get(
            "/api/shares/locked",
            params={"department_id": cast.department_id, "limit": 200},
            headers=cast.admin.headers,
        )
        return [b["bucket_id"] for b in ok(listed)["items"]]

    assert bucket_id in locked_ids()
    problem(
        api.client.get(
            "/api/shares/locked",
            params={"department_id": cast.department_id},
            headers=cast.sender.headers,
        ),
        403,
        "NotAllowedToUnlock",
    )
    problem(
        api.client.post(f"/api/shares/{bucket_id}/unlock", headers=colleague.headers),
        403,
        "NotAllowedToUnlock",
    )
    problem(
        api.client.post(f"/api/shares/{bucket_id}/unlock", headers=cast.sender.headers),
        403,
        "NotAllowedToUnlock",
    )
    unlocked = ok(api.client.post(f"/api/shares/{bucket_id}/unlock", headers=cast.admin.headers))
    assert unlocked["locked"] is False
    assert bucket_id not in locked_ids()
    problem(
        api.client.post(f"/api/shares/{bucket_id}/unlock", headers=cast.admin.headers),
        409,
        "BucketNotLocked",
    )
    wait_for(lambda: api.study(colleague, uid).status_code == 200, "access after the unlock")
    ok(api.verify_otp(third, bucket_id, api.request_otp(third, bucket_id)))
    detail = ok(
        wait_for(
            lambda: (r := api.study(third, uid)).status_code == 200 and r,
            "the group member's access",
        )
    )
    assert detail["access"]["via"] == "group" and detail["access"]["group_id"] == cast.group_id

    entries = api.logged(
        cast.admin,
        uid,
        [
            ("BucketLocked", by_actor(third.user_id, bucket_id=bucket_id)),
            ("BucketUnlocked", by_actor(cast.admin.user_id, unlocked_as="department_admin")),
            ("OTPVerified", by_actor(third.user_id)),
        ],
    )
    assert bucket_steps(entries, bucket_id) == [
        "StudyShared",
        *["OTPRequested", "OTPVerified"],  # the colleague
        "OTPRequested",
        *["OTPFailed"] * 5,
        "BucketLocked",
        "BucketUnlocked",
        *["OTPRequested", "OTPVerified"],  # the third party, after the unlock
    ]
    lock = next(e for e in entries if e["event_type"] == "BucketLocked")
    assert lock["alert"] == "bucket_locked" and lock["payload"]["failed_attempts"] == 5


def test_sender_revokes_and_access_ends_on_the_next_request(api: Gateway, cast: SimpleNamespace):
    uid = upload(api, cast, "X-ray hand").study_uid
    write_report(api, cast.sender, uid, "Fracture of the fifth metacarpal.")
    bucket_id = api.shared(
        cast.sender,
        study_uids=[uid],
        recipients=[user(cast.colleague), {"kind": "group", "id": cast.group_id}],
        access_level="images_report_read",
        two_factor=False,
        send_mail=False,
    )
    colleague, member = cast.colleague, cast.member
    for person in (colleague, member):
        wait_for(lambda p=person: api.study(p, uid).status_code == 200, "the grant")
    report = ok(api.report(colleague, uid))
    assert report["text"] == "Fracture of the fifth metacarpal."

    problem(
        api.client.delete(f"/api/shares/{bucket_id}", headers=colleague.headers),
        403,
        "NotAllowedToRevoke",
    )
    revoked = ok(
        api.client.delete(
            f"/api/shares/{bucket_id}/recipients/{colleague.user_id}", headers=cast.sender.headers
        )
    )
    assert [
        r["revoked"] for r in revoked["recipients"] if r["recipient_id"] == colleague.user_id
    ] == [True]
    refused = refused_now(lambda: api.study(colleague, uid), "revoked recipient")
    problem(refused, 403, "GrantRevoked")
    problem(api.report(colleague, uid), 403, "GrantRevoked")
    ok(api.study(member, uid))

    whole = ok(api.client.delete(f"/api/shares/{bucket_id}", headers=cast.sender.headers))
    assert whole["status"] == "revoked"
    refused = refused_now(lambda: api.study(member, uid), "revoked bucket")
    problem(refused, 403, "GrantRevoked")
    problem(
        api.client.get(f"/dicomweb/studies/{uid}/metadata", headers=member.headers),
        403,
        "GrantRevoked",
    )
    mine = ok(api.client.get("/api/shared-with-me", headers=member.headers))
    assert bucket_id not in {i["bucket_id"] for i in mine["items"]}
    problem(
        api.client.delete(f"/api/shares/{bucket_id}", headers=cast.sender.headers),
        409,
        "BucketNotActive",
    )

    tab = api.access_tab(
        cast.admin,
        uid,
        lambda t: any(
            b["bucket_id"] == bucket_id and b["state"] == "revoked" for b in t["buckets"]
        ),
        "the revoked bucket",
    )
    grant = next(g for g in tab["users"] if g["recipient_id"] == colleague.user_id)
    assert (grant["state"], grant["revoked_by"]) == ("revoked", cast.sender.user_id)
    assert [g["state"] for g in tab["groups"] if g["bucket_id"] == bucket_id] == ["revoked"]

    api.logged(
        cast.admin,
        uid,
        [
            ("AccessRevoked", by_actor(cast.sender.user_id, scope="recipient")),
            ("AccessRevoked", by_actor(cast.sender.user_id, scope="bucket")),
            ("StudyAccessed", by_actor(colleague.user_id, action="report_read")),
            ("StudyAccessed", by_actor(member.user_id, action="view", via="group")),
        ],
    )


# -------------------------------------------------------------------------------- patient


def test_patient_logs_in_with_reference_number_birth_date_and_pincode_and_sees_only_their_study(
    api: Gateway, cast: SimpleNamespace
):
    uid = upload(api, cast, "MR spine", patient="Story^Paula").study_uid
    other = upload(api, cast, "MR spine", patient="Story^Oscar").study_uid
    write_report(api, cast.sender, uid, "Disc protrusion L4-L5.")
    issued = ok(
        api.client.post(
            f"/api/studies/{uid}/reference-numbers", json={}, headers=cast.admin.headers
        ),
        201,
    )
    number, ref_id = issued["reference_number"], issued["reference_id"]
    assert issued["usable"] and issued["complies_with_rule"]
    pincode = "482913"
    ok(
        api.client.put(
            f"/api/studies/{uid}/reference-numbers/{ref_id}/pincode",
            json={"pincode": pincode},
            headers=cast.admin.headers,
        ),
        204,
    )
    problem(  # a physician with no way into the study: as if it did not exist
        api.client.post(
            f"/api/studies/{uid}/reference-numbers", json={}, headers=cast.colleague.headers
        ),
        404,
        "StudyNotFound",
    )
    birth = f"{STUDY_BIRTH_DATE[:4]}-{STUDY_BIRTH_DATE[4:6]}-{STUDY_BIRTH_DATE[6:]}"

    def login(**extra: str) -> httpx.Response:
        body = {"reference_number": number, "date_of_birth": birth, **extra}
        return api.client.post("/api/auth/patient-login", json=body)

    # Identity learns the number and its pincode from the study store's events. A login with
    # a number identity does not know yet counts as a failure (5 in a row lock the number), so
    # first wait until another consumer of those events (audit) has them.
    api.logged(
        cast.admin,
        uid,
        [("ReferenceNumberIssued", anything), ("PincodeSet", anything)],
    )

    def pincode_asked() -> httpx.Response | None:
        r = login()
        return r if r.status_code == 401 and r.json().get("rule") == "PincodeRequired" else None

    asks_pincode = wait_for(pincode_asked, "the reference number and pincode known to identity")
    problem(asks_pincode, 401, "PincodeRequired")
    token = ok(login(pincode=pincode))
    assert token["study_uid"] == uid
    patient = {"Authorization": f"Bearer {token['access_token']}"}
    problem(login(pincode="000000"), 401, "PatientLoginRefused")
    problem(login(pincode=pincode, date_of_birth="1980-02-15"), 401, "PatientLoginRefused")
    problem(api.client.post("/api/auth/patient-login", json={"reference_number": number}), 422)

    detail = ok(api.study(patient, uid))
    assert detail["access"]["via"] == "reference_number"
    assert detail["access"]["reference_id"] == ref_id
    assert ok(api.report(patient, uid))["text"] == "Disc protrusion L4-L5."
    listed = ok(api.client.get("/api/studies", headers=patient))
    assert [s["study_uid"] for s in listed["items"]] == [uid] and listed["total"] == 1
    problem(api.study(patient, other), 404, "StudyNotFound")
    problem(
        api.client.get(f"/dicomweb/studies/{other}/metadata", headers=patient), 404, "StudyNotFound"
    )
    problem(api.client.put(f"/api/studies/{uid}/report", json={"text": "x"}, headers=patient), 403)

    api.logged(
        cast.admin,
        uid,
        [
            ("ReferenceNumberIssued", by_actor(cast.admin.user_id, reference_id=ref_id)),
            ("PincodeSet", anything),
            ("PatientLoginSucceeded", lambda e: e["payload"].get("reference_id") == ref_id),
            ("PincodeFailed", lambda e: e["payload"].get("reference_id") == ref_id),
            ("StudyAccessed", lambda e: e["payload"].get("via") == "reference_number"),
        ],
    )
    for entry in api.study_log(cast.admin, uid):
        assert pincode not in str(entry), "no pincode in the study logging"
        assert number not in str(entry), "an auditor reads no reference number: it opens a study"
    tab = api.access_tab(
        cast.admin,
        uid,
        lambda t: any(r["logins"] and r["pincode_failed_attempts"] for r in t["reference_numbers"]),
        "the patient's login and wrong pincode",
    )
    (ref,) = tab["reference_numbers"]
    assert (ref["reference_id"], ref["pincode_set"], ref["state"]) == (ref_id, True, "active")


# -------------------------------------------------------------------------------- re-sharing


def test_reshare_only_with_allow_further_sharing_and_never_more_than_held(
    api: Gateway, cast: SimpleNamespace
):
    allowed = upload(api, cast, "CT sinus").study_uid
    denied = upload(api, cast, "CT sinus follow-up").study_uid
    colleague, third = cast.colleague, cast.third
    parent_id = api.shared(
        cast.sender,
        study_uids=[allowed],
        recipients=[user(colleague)],
        access_level="images_report_read",
        allow_further_sharing=True,
        two_factor=False,
        send_mail=False,
    )
    ok(
        api.share(
            cast.sender,
            study_uids=[denied],
            recipients=[user(colleague)],
            access_level="images_report_read",
            two_factor=False,
            send_mail=False,
        ),
        201,
    )

    refused = api.share(
        colleague,
        study_uids=[denied],
        recipients=[user(third)],
        access_level="images_report_read",
        two_factor=False,
    )
    problem(refused, 403, "FurtherSharingNotAllowed")
    refused = api.share(
        colleague,
        study_uids=[allowed],
        recipients=[user(third)],
        access_level="images_report_write",
        parent_bucket_id=parent_id,
        two_factor=False,
    )
    problem(refused, 422, "AccessLevelExceedsHeld")
    child = ok(
        api.share(
            colleague,
            study_uids=[allowed],
            recipients=[user(third)],
            access_level="images_report_read",
            parent_bucket_id=parent_id,
            two_factor=False,
            send_mail=True,
        ),
        201,
    )
    child_id = child["bucket_id"]
    assert child["confirmation"]["parent_bucket_id"] == parent_id
    mail = api.mail_about(third.email, child_id)
    assert mail["subject"].endswith("a partagé un examen avec vous"), mail["subject"]
    detail = ok(
        wait_for(lambda: (r := api.study(third, allowed)).status_code == 200 and r, "re-share")
    )
    assert detail["access"]["bucket_id"] == child_id
    # no way in, nor may they break the glass: answered as if the study did not exist
    problem(api.study(third, denied), 404, "StudyNotFound")
    tree = ok(api.client.get(f"/api/shares/{parent_id}", headers=cast.sender.headers))
    assert tree["children"] == [child_id]

    ok(api.client.delete(f"/api/shares/{parent_id}", headers=cast.sender.headers))
    refused = refused_now(lambda: api.study(third, allowed), "re-share of a revoked bucket")
    problem(refused, 403, "GrantRevoked")

    api.logged(
        cast.admin,
        allowed,
        [
            ("StudyShared", by_actor(colleague.user_id, parent_bucket_id=parent_id)),
            ("AccessRevoked", lambda e: e["payload"].get("cascade_from") == parent_id),
        ],
    )


# -------------------------------------------------------------------------------- expiry


def test_access_ends_by_itself_at_valid_until(api: Gateway, cast: SimpleNamespace):
    uid = upload(api, cast, "US abdomen").study_uid
    colleague = cast.colleague
    problem(
        api.share(
            cast.sender,
            study_uids=[uid],
            recipients=[user(colleague)],
            access_level="images_report_read",
            valid_until=in_seconds(-60),
            two_factor=False,
        ),
        422,
        "ValidUntilInPast",
    )
    problem(
        api.share(
            cast.sender,
            study_uids=[uid],
            recipients=[user(colleague)],
            access_level="images_report_read",
            valid_until=in_seconds(60),
            unlimited=True,
            two_factor=False,
        ),
        422,
        "ValidityChoiceAmbiguous",
    )
    # the API takes any instant in the future: a few seconds is a valid share
    shared = ok(
        api.share(
            cast.sender,
            study_uids=[uid],
            recipients=[user(colleague)],
            access_level="images_report_read",
            valid_until=in_seconds(4),
            two_factor=False,
            send_mail=False,
        ),
        201,
    )
    bucket_id = shared["bucket_id"]
    valid_until = datetime.fromisoformat(shared["confirmation"]["valid_until"])
    detail = ok(
        wait_for(lambda: (r := api.study(colleague, uid)).status_code == 200 and r, "the grant")
    )
    assert datetime.fromisoformat(detail["access"]["valid_until"]) == valid_until

    expired = wait_for(
        lambda: (r := api.study(colleague, uid)).status_code != 200 and r, "the end of access", 15
    )
    assert time.time() >= valid_until.timestamp()
    problem(expired, 403, "GrantExpired")
    problem(api.report(colleague, uid), 403, "GrantExpired")
    wait_for(
        lambda: (
            ok(api.client.get(f"/api/shares/{bucket_id}", headers=cast.sender.headers))["status"]
            == "expired"
        ),
        "the bucket marked expired",
    )
    api.logged(cast.admin, uid, [("BucketExpired", about_bucket(bucket_id))])


# -------------------------------------------------------------------------------- break-the-glass


def test_break_the_glass_needs_a_reason_and_is_logged_and_alerted(
    api: Gateway, cast: SimpleNamespace
):
    uid = upload(api, cast, "CT trauma").study_uid
    member = cast.member
    problem(api.study(member, uid), 404, "StudyNotFound")  # may not break the glass (yet)
    refused = api.client.post(
        f"/api/studies/{uid}/break-glass", json={"reason": "  "}, headers=member.headers
    )
    problem(refused, 422, "BreakTheGlassReasonRequired")
    problem(
        api.client.post(
            f"/api/studies/{uid}/break-glass", json={"reason": "x"}, headers=cast.sender.headers
        ),
        409,
        "BreakTheGlassNotNeeded",
    )
    # The member is a physician of no department: the department lets any approved physician
    # of the environment break the glass (issue 15, point 4; by default only its institution).
    ok(
        api.client.put(
            f"/api/departments/{cast.department_id}/policy",
            json={"break_the_glass": "environment"},
            headers=cast.admin.headers,
        ),
        204,
    )
    told = wait_for(
        lambda: (r := api.study(member, uid)).status_code == 403 and r,
        "the policy in the study store: the member is told the study exists",
    )
    problem(told, 403, "NoAccessToStudy")  # so that they can break the glass
    reason = f"unconscious patient in the emergency room {unique('')}"

    def break_the_glass() -> httpx.Response | None:
        r = api.client.post(
            f"/api/studies/{uid}/break-glass", json={"reason": reason}, headers=member.headers
        )
        return None if r.status_code == 403 else r  # the policy has not reached it yet

    glass = ok(wait_for(break_the_glass, "the break-the-glass policy in the study store"), 201)
    assert glass["access"]["via"] == "break_the_glass" and glass["access"]["images"]
    detail = ok(api.study(member, uid))
    assert detail["access"]["via"] == "break_the_glass"

    alert = api.mail_about(cast.admin.email, uid)
    assert alert["subject"].startswith("Security alert: break-the-glass access by")
    assert reason in alert["text"]

    entries = api.logged(
        cast.admin,
        uid,
        [
            ("BreakTheGlassUsed", by_actor(member.user_id, reason=reason)),
            ("StudyAccessed", by_actor(member.user_id, via="break_the_glass")),
        ],
    )
    tab = api.access_tab(cast.admin, uid, lambda t: t["break_the_glass"], "break-the-glass")
    assert [(b["user_id"], b["reason"]) for b in tab["break_the_glass"]] == [
        (member.user_id, reason)
    ]
    used = next(e for e in entries if e["event_type"] == "BreakTheGlassUsed")
    assert used["alert"] == "break_the_glass" and used["category"] == "break_the_glass"
    problem(
        api.client.get(f"/api/audit/studies/{uid}/log", headers=member.headers),
        403,
        "AuditLogReadersOnly",
    )


# ----------------------------------------------------------------- issue 16: manuals' details


def test_a_validity_date_without_a_time_ends_that_evening_in_the_departments_zone(
    api: Gateway, cast: SimpleNamespace
):
    """Issue 16, point 8: the department is Belgian; a date chosen in the calendar ends at
    23:59:59 Brussels time; with no date at all, access lasts one calendar month."""
    from datetime import UTC, timedelta
    from zoneinfo import ZoneInfo

    uid = upload(api, cast, "CT sinus").study_uid
    brussels = ZoneInfo("Europe/Brussels")
    day = (datetime.now(brussels) + timedelta(days=10)).date()
    shared = ok(
        api.share(
            cast.sender,
            study_uids=[uid],
            recipients=[user(cast.colleague)],
            access_level="images_report_read",
            valid_until=day.isoformat(),
            send_mail=False,
        ),
        201,
    )
    until = datetime.fromisoformat(shared["confirmation"]["valid_until"]).astimezone(brussels)
    assert (until.date(), until.hour, until.minute, until.second) == (day, 23, 59, 59)
    problem(
        api.share(
            cast.sender,
            study_uids=[uid],
            recipients=[user(cast.colleague)],
            access_level="images_report_read",
            valid_until=f"{day.isoformat()}T12:00",  # a time without its offset
            send_mail=False,
        ),
        422,
    )
    before = datetime.now(UTC)
    default = ok(
        api.share(
            cast.sender,
            study_uids=[uid],
            recipients=[user(cast.colleague)],
            access_level="images_report_read",
            send_mail=False,
        ),
        201,
    )
    until = datetime.fromisoformat(default["confirmation"]["valid_until"])
    local = before.astimezone(brussels)
    month = local.month % 12 + 1
    year = local.year + (local.month == 12)
    assert until.astimezone(brussels).date().replace(day=1) == local.date().replace(
        year=year, month=month, day=1
    ), "one calendar month later"


def test_a_tie_mails_in_the_first_recipients_language_a_groups_own_included(
    api: Gateway, cast: SimpleNamespace
):
    """Issue 16, point 9: the practice (its primary contact speaks French) and the Dutch-speaking
    colleague: no majority, so the first recipient's language, the group's own."""
    uid = upload(api, cast, "MR shoulder").study_uid
    group = {"kind": "group", "id": cast.group_id}
    for recipients, language in (
        ([group, user(cast.colleague)], "fr"),
        ([user(cast.colleague), group], "nl"),
    ):
        shared = ok(
            api.share(
                cast.sender,
                study_uids=[uid],
                recipients=recipients,
                access_level="images_report_read",
                send_mail=False,
            ),
            201,
        )
        assert shared["confirmation"]["language"] == language


def test_the_message_turns_read_at_the_first_open_not_a_window_later(
    api: Gateway, cast: SimpleNamespace
):
    """Issue 16, point 12: the colleague opens the study in the viewer (WADO-RS metadata, not
    the study page); the first open is its own event, so the message label turns green
    promptly (accesses themselves stay batched per window) and the study logging shows it."""
    uid = upload(api, cast, "CT wrist").study_uid
    colleague = cast.colleague
    bucket_id = api.shared(
        cast.sender,
        study_uids=[uid],
        recipients=[user(colleague)],
        access_level="images_report_read",
        message=f"Wrist, please {unique('')}",
        two_factor=False,
        send_mail=False,
    )

    def message_state() -> str | None:
        mine = ok(api.client.get("/api/shared-with-me", headers=colleague.headers))
        states = [i["message_state"] for i in mine["items"] if i["bucket_id"] == bucket_id]
        return states[0] if states else None

    def senders_label() -> str | None:
        """The sender's side: the Message label in "my shares"."""
        sent = ok(api.client.get("/api/shares/sent", headers=cast.sender.headers))
        states = [b["message_state"] for b in sent["items"] if b["bucket_id"] == bucket_id]
        return states[0] if states else None

    assert wait_for(message_state, "the share in the colleague's list") == "unread"
    assert senders_label() == "unread"
    metadata = wait_for(
        lambda: (
            (
                r := api.client.get(f"/dicomweb/studies/{uid}/metadata", headers=colleague.headers)
            ).status_code
            == 200
            and r
        ),
        "the grant in the study store",
    )
    opened = time.monotonic()
    assert metadata.json()
    wait_for(lambda: message_state() == "read", "the message marked read", timeout=10)
    took = time.monotonic() - opened
    wait_for(lambda: senders_label() == "read", "the sender's label read", timeout=10)
    print(
        f"message read {took:.2f} s after the first open (the recipient's list), "
        f"{time.monotonic() - opened:.2f} s (the sender's my shares)"
    )
    entries = api.logged(
        cast.admin, uid, [("StudyFirstOpened", by_actor(colleague.user_id, bucket_id=bucket_id))]
    )
    first = [e for e in entries if e["event_type"] == "StudyFirstOpened"]
    assert len(first) == 1 and first[0]["category"] == "message_read"


def test_a_department_issues_reference_numbers_on_arrival_and_keeps_reports_from_patients(
    api: Gateway, platform: LocalPlatform
):
    """Issue 16, point 2: patient access is the sending department's policy. This department
    issues a reference number as each study arrives, valid 30 days, and patients do not read
    its reports; its admin finds the number on the Access tab and the patient logs in with it."""
    from datetime import UTC, timedelta

    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department_id = api.radiology_department(desk, f"Radiology {unique('')}")
    ok(
        api.client.put(
            f"/api/departments/{department_id}/policy",
            json={
                "reference_numbers_on_arrival": True,
                "reference_number_validity_days": 30,
                "patient_report_access": "none",
            },
            headers=desk,
        ),
        204,
    )
    admin = api.register(
        desk,
        "Greta",
        roles=["department_admin", "department_staff"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    arrived = datetime.now(UTC)
    uid = api.upload(admin, "CT knee", "Story^Nora", STUDY_BIRTH_DATE).study_uid
    write_report(api, admin, uid, "No fracture.")

    def numbers() -> list[dict] | None:
        r = api.client.get(f"/api/studies/{uid}/reference-numbers", headers=admin.headers)
        items = ok(r)
        items = items.get("items", items) if isinstance(items, dict) else items
        return items or None

    [number] = wait_for(numbers, "the reference number issued on arrival")
    assert number["usable"]
    valid_to = datetime.fromisoformat(number["valid_to"])
    assert timedelta(days=29) < valid_to - arrived <= timedelta(days=30, minutes=5)
    api.logged(admin.headers, uid, [("ReferenceNumberIssued", anything)])
    birth = f"{STUDY_BIRTH_DATE[:4]}-{STUDY_BIRTH_DATE[4:6]}-{STUDY_BIRTH_DATE[6:]}"

    def patient_login() -> httpx.Response | None:
        body = {"reference_number": number["reference_number"], "date_of_birth": birth}
        r = api.client.post("/api/auth/patient-login", json=body)
        return r if r.status_code == 200 else None

    token = ok(wait_for(patient_login, "the number known to identity"))
    patient = {"Authorization": f"Bearer {token['access_token']}"}
    assert ok(api.study(patient, uid))["study_uid"] == uid
    problem(api.report(patient, uid), 403, "ReportReadNotAllowed")
