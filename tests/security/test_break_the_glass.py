"""Issue 15, point 4: break-the-glass follows the study department's policy.

Who may break the glass on a department's studies is that department's policy
(`break_the_glass`): by default the staff and physicians of the same institution, or nobody,
or any approved physician of the same environment. Never an auditor, never over a revocation,
a lock or an expiry of a bucket the caller was in, and an unknown study answers exactly like a
refused one. A use stays logged and alerted.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from studyshare.devstack.platform import LocalPlatform

from ..storykit import (
    Gateway,
    Person,
    by_actor,
    in_seconds,
    ok,
    problem,
    refused_after,
    refused_now,
    unique,
    wait_for,
)

BIRTH_DATE = "19690707"
REFUSED = "BreakTheGlassNotAllowed"


@pytest.fixture(scope="module")
def world(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    """Callers from outside the sending department: a physician and a staff member of another
    department (so of another institution), a physician without a department, an auditor."""
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    elsewhere = _department(api, desk, "Elsewhere")
    return SimpleNamespace(
        desk=desk,
        elsewhere_physician=api.register(
            desk, "Cas", roles=["physician"], department_ids=[elsewhere]
        ),
        elsewhere_staff=api.register(
            desk, "Cato", roles=["department_staff"], department_ids=[elsewhere]
        ),
        free_physician=api.register(desk, "Fien", roles=["physician"]),
        auditor=api.register(desk, "Aude", roles=["auditor"]),
        auditing_physician=api.register(desk, "Arno", roles=["auditor", "physician"]),
    )


def _department(
    api: Gateway, desk: dict[str, str], name: str, institution: str | None = None
) -> str:
    body = {"name": unique(f"{name} "), "country": "be", "kind": "radiology"}
    if institution is not None:
        body["institution_id"] = institution
    r = api.client.post("/api/departments", json=body, headers=desk)
    return ok(r, 201)["department_id"]


def _sending(
    api: Gateway,
    world: SimpleNamespace,
    policy: str | None = None,
    institution: str | None = None,
) -> SimpleNamespace:
    """A sending department, its admin and sending physician, one study of it."""
    department = _department(api, world.desk, "Sending", institution)
    admin = api.register(
        world.desk,
        "Ada",
        roles=["department_admin", "department_staff"],
        department_ids=[department],
        admin_of=[department],
    )
    sender = api.register(world.desk, "Sven", roles=["physician"], department_ids=[department])
    if policy is not None:
        _set_policy(api, admin, department, policy)
    uid = api.upload(sender, unique("CT glass "), "Glass^Patient", BIRTH_DATE).study_uid
    return SimpleNamespace(department=department, admin=admin, sender=sender, uid=uid)


def _set_policy(api: Gateway, admin: Person, department: str, who: str) -> None:
    ok(
        api.client.put(
            f"/api/departments/{department}/policy",
            json={"break_the_glass": who},
            headers=admin.headers,
        ),
        204,
    )
    wait_for(
        lambda: (
            ok(api.client.get(f"/api/departments/{department}", headers=admin.headers))["policy"][
                "break_the_glass"
            ]
            == who
        ),
        f"the policy {who} of {department}",
    )
    time.sleep(1.0)  # the study store follows identity.events within a fraction of that


def _glass(api: Gateway, who: Person, uid: str, reason: str = "") -> httpx.Response:
    reason = reason or f"emergency {unique('')}"
    return api.client.post(
        f"/api/studies/{uid}/break-glass", json={"reason": reason}, headers=who.headers
    )


def _refused(response: httpx.Response) -> dict[str, Any]:
    return problem(response, 403, REFUSED)


def test_a_physician_of_another_institution_does_not_break_the_glass_by_default(
    api: Gateway, world: SimpleNamespace
):
    sending = _sending(api, world)
    for outsider in (world.elsewhere_physician, world.elsewhere_staff, world.free_physician):
        _refused(_glass(api, outsider, sending.uid))
        problem(api.study(outsider, sending.uid), 404, "StudyNotFound")


def test_by_default_the_staff_and_physicians_of_the_institution_break_the_glass(
    api: Gateway, world: SimpleNamespace
):
    institution = unique("inst_")
    sending = _sending(api, world, institution=institution)
    department = ok(api.client.get(f"/api/departments/{sending.department}", headers=world.desk))
    assert department["policy"]["break_the_glass"] == "institution"
    assert department["institution_id"] == institution
    sister = _department(api, world.desk, "Sister", institution)
    physician = api.register(world.desk, "Bart", roles=["physician"], department_ids=[sister])
    staff = api.register(world.desk, "Britt", roles=["department_staff"], department_ids=[sister])
    _refused(_glass(api, world.elsewhere_physician, sending.uid))

    reason = f"trauma call {unique('')}"
    glass = ok(_glass(api, physician, sending.uid, reason), 201)
    assert glass["access"]["via"] == "break_the_glass"
    assert ok(api.study(physician, sending.uid))["access"]["via"] == "break_the_glass"
    assert ok(_glass(api, staff, sending.uid), 201)["access"]["images"]

    # Still logged and alerted.
    alert = api.mail_about(sending.admin.email, sending.uid)
    assert alert["subject"].startswith("Security alert: break-the-glass access by")
    api.logged(
        sending.admin,
        sending.uid,
        [("BreakTheGlassUsed", by_actor(physician.user_id, reason=reason))],
    )


def test_a_department_may_let_nobody_break_the_glass(api: Gateway, world: SimpleNamespace):
    institution = unique("inst_")
    sending = _sending(api, world, policy="nobody", institution=institution)
    sister = _department(api, world.desk, "Sister", institution)
    physician = api.register(world.desk, "Bert", roles=["physician"], department_ids=[sister])
    for caller in (physician, world.free_physician):
        _refused(_glass(api, caller, sending.uid))


def test_a_department_may_let_any_approved_physician_of_the_environment_break_the_glass(
    api: Gateway, world: SimpleNamespace
):
    sending = _sending(api, world, policy="environment")
    _refused(_glass(api, world.elsewhere_staff, sending.uid))
    for physician in (world.free_physician, world.elsewhere_physician):
        assert ok(_glass(api, physician, sending.uid), 201)["access"]["via"] == "break_the_glass"


def test_an_auditor_never_breaks_the_glass(api: Gateway, world: SimpleNamespace):
    sending = _sending(api, world, policy="environment")
    for auditor in (world.auditor, world.auditing_physician):
        _refused(_glass(api, auditor, sending.uid))
        problem(api.study(auditor, sending.uid), 404, "StudyNotFound")


def _share(api: Gateway, sending: SimpleNamespace, to: Person, **body: Any) -> str:
    return api.shared(
        sending.sender,
        study_uids=[sending.uid],
        recipients=[{"kind": "user", "id": to.user_id}],
        access_level="images_report_read",
        send_mail=False,
        **({"two_factor": False} | body),
    )


def test_no_break_the_glass_over_a_revocation_a_lock_or_an_expiry(
    api: Gateway, world: SimpleNamespace
):
    sending = _sending(api, world, policy="environment")
    revoked, locked, expired, earlier = (
        api.register(world.desk, name, roles=["physician"])
        for name in ("Rik", "Lotte", "Eva", "Ward")
    )

    bucket = _share(api, sending, revoked)
    wait_for(lambda: api.study(revoked, sending.uid).status_code == 200, "the grant")
    ok(
        api.client.delete(
            f"/api/shares/{bucket}/recipients/{revoked.user_id}", headers=sending.sender.headers
        )
    )
    refused_now(lambda: api.study(revoked, sending.uid), "the revoked recipient")
    _refused(_glass(api, revoked, sending.uid))

    bucket = _share(api, sending, locked, two_factor=True)
    code = api.request_otp(locked, bucket)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(10):
        if api.verify_otp(locked, bucket, wrong).status_code == 423:
            break
    problem(refused_now(lambda: api.study(locked, sending.uid), "the lock"), 423)
    _refused(_glass(api, locked, sending.uid))

    _share(api, sending, expired, valid_until=in_seconds(3))
    wait_for(lambda: api.study(expired, sending.uid).status_code == 200, "the short grant")
    refused_after(lambda: api.study(expired, sending.uid), 20.0, "the expiry")
    _refused(_glass(api, expired, sending.uid))

    # A glass broken before a grant that is then revoked does not outlive the revocation.
    ok(_glass(api, earlier, sending.uid), 201)
    bucket = _share(api, sending, earlier)
    wait_for(
        lambda: (
            (r := api.study(earlier, sending.uid)).status_code == 200
            and r.json()["access"]["bucket_id"] == bucket
        ),
        "the grant over the broken glass",
    )
    ok(
        api.client.delete(
            f"/api/shares/{bucket}/recipients/{earlier.user_id}", headers=sending.sender.headers
        )
    )
    refused = refused_now(lambda: api.study(earlier, sending.uid), "over the glass")
    problem(refused, 403, "GrantRevoked")


def test_an_unknown_study_answers_exactly_like_a_refused_break_the_glass(
    api: Gateway, world: SimpleNamespace
):
    sending = _sending(api, world)
    caller = world.elsewhere_physician
    refused = _refused(_glass(api, caller, sending.uid, "same reason"))
    unknown_uid = f"2.25.{uuid.uuid4().int}"
    unknown = _refused(_glass(api, caller, unknown_uid, "same reason"))

    def shape(body: dict[str, Any], uid: str) -> dict[str, Any]:
        return {k: (v.replace(uid, "<uid>") if isinstance(v, str) else v) for k, v in body.items()}

    assert shape(refused, sending.uid) == shape(unknown, unknown_uid)


def test_a_study_one_could_never_open_answers_word_for_word_as_an_unknown_one(
    api: Gateway, world: SimpleNamespace
):
    """No oracle of which studies exist. To a caller with no way in (no grant, no bucket of
    the study that ended, and not one the department's policy lets break the glass), every
    route of an existing study answers as for a study never received: status, rule and
    detail. Before, any account could test a Study Instance UID (403 NoAccessToStudy against
    404 StudyNotFound). One who may break the glass is still told they have no access, so
    that they can."""
    institution = unique("inst_")
    sending = _sending(api, world, institution=institution)
    never = f"2.25.{uuid.uuid4().int}"
    routes = [
        "/api/studies/{uid}",
        "/api/studies/{uid}/report",
        "/api/studies/{uid}/download",
        "/dicomweb/studies/{uid}/metadata",
        "/dicomweb/studies/{uid}/series",
        "/api/studies/{uid}/reference-numbers",
    ]

    def answer(who: Person, route: str, uid: str) -> tuple[int, str, dict[str, Any]]:
        r = api.client.get(route.format(uid=uid), headers=who.headers)
        body = {k: v for k, v in r.json().items() if k not in ("instance", "correlation_id")}
        return r.status_code, r.headers["content-type"], body

    outsiders = (
        world.elsewhere_physician,
        world.elsewhere_staff,
        world.free_physician,
        world.auditor,
    )
    for outsider in outsiders:
        for route in routes:
            existing, unknown = answer(outsider, route, sending.uid), answer(outsider, route, never)
            assert existing == unknown, (route, existing, unknown)
            assert existing[0] == 404 and existing[2]["rule"] == "StudyNotFound", existing

    # the share service the same: sharing it is refused as sharing a study never received
    recipient = api.register(world.desk, "Rhea", roles=["physician"])
    _share(api, sending, recipient)  # the share service knows the study now
    for outsider in outsiders[:3]:
        body = {
            "reason": "second opinion",
            "patient_agreed": True,
            "recipients": [{"kind": "user", "id": recipient.user_id}],
            "access_level": "images_report_read",
            "unlimited": True,
            "send_mail": False,
        }
        shared, never_shared = (
            api.client.post(
                "/api/shares", json=body | {"study_uids": [uid]}, headers=outsider.headers
            )
            for uid in (sending.uid, never)
        )
        assert shared.status_code == never_shared.status_code == 422, shared.text
        assert shared.json()["rule"] == never_shared.json()["rule"] == "StudyNotKnown"
        assert shared.json()["detail"].replace(sending.uid, never) == never_shared.json()["detail"]

    sister = _department(api, world.desk, "Sister", institution)
    colleague = api.register(world.desk, "Iris", roles=["physician"], department_ids=[sister])
    told = wait_for(
        lambda: (r := api.study(colleague, sending.uid)).status_code == 403 and r,
        "the colleague's department in the study store",
    )
    problem(told, 403, "NoAccessToStudy")
    problem(api.study(colleague, never), 404, "StudyNotFound")
