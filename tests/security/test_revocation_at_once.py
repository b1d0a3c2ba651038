"""Issue 15, point 13: revocation at once.

The request a recipient sends right after the revoke (of a recipient, a study, a bucket, or
a cascade to a re-share), the lock of a two-factor bucket, or a logout has answered is
refused, through every route: the study's details and report, WADO-RS through the hot routes
(metadata, instance) and the full app (rendered, frames, series), QIDO-RS and the overview
`GET /api/studies` (the study is no longer listed). For a logout (or a deactivation), the
ended token's next request is refused by every service.

Before the fix the revocation reached the study store through the relay, the broker, the
worker and a 0.1 s refresh (about 0.6 s), and the tests allowed 3 s; a logout travelled
through `identity.events` to every API process. Now each such command answers only once
every process that decides has it (`StudyShare-Propagated: true`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest

from studyshare.devstack.dicomgen import DemoStudy, stable_uid
from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, Person, ok, problem, unique, wait_for

PROPAGATED = "studyshare-propagated"
BIRTH_DATE = "19720304"
#: what a refused study answers: no grant (403), locked (423)
REFUSED = {403, 423}
Read = Callable[[Person], httpx.Response]


@pytest.fixture(scope="module")
def world(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    """A radiology department and its physician, who uploads and shares."""
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department = api.radiology_department(desk, unique("At once "))
    sender = api.register(desk, "Sofie", roles=["physician"], department_ids=[department])
    return SimpleNamespace(desk=desk, department=department, sender=sender)


def study_reads(api: Gateway, study: DemoStudy) -> dict[str, Read]:
    """Every way to read one study, each a route of its own (hot ones marked)."""
    uid = study.study_uid
    series = stable_uid(f"{study.key}/1")
    sop = stable_uid(f"{study.key}/1/1")
    wado = f"/dicomweb/studies/{uid}"
    instance = f"{wado}/series/{series}/instances/{sop}"
    dicom = {"Accept": 'multipart/related; type="application/dicom"'}

    def get(path: str, **headers: str) -> Read:
        return lambda who: api.client.get(path, headers={**who.headers, **headers})

    return {
        "details": get(f"/api/studies/{uid}"),
        "report": get(f"/api/studies/{uid}/report"),
        "metadata (hot)": get(f"{wado}/metadata"),
        "instance metadata (hot)": get(f"{instance}/metadata"),
        "instance (hot)": get(instance, **dicom),
        "study retrieve (hot)": get(wado, **dicom),
        "series": get(f"{wado}/series"),
        "frames": get(f"{instance}/frames/1"),
        "rendered": get(f"{instance}/rendered"),
        "thumbnail": get(f"{wado}/thumbnail"),
    }


def listed(api: Gateway, who: Person, uid: str) -> bool:
    """In the overview (`GET /api/studies`) and in a QIDO-RS search."""
    overview = ok(api.client.get("/api/studies", params={"limit": 200}, headers=who.headers))
    in_overview = uid in {s["study_uid"] for s in overview["items"]}
    search = api.client.get(
        "/dicomweb/studies", params={"StudyInstanceUID": uid}, headers=who.headers
    )
    assert search.status_code in (200, 204), (search.status_code, search.text)
    in_search = search.status_code == 200 and uid in search.text
    assert in_overview == in_search, (in_overview, in_search)
    return in_overview


def opens(api: Gateway, who: Person, study: DemoStudy) -> None:
    """Wait until the grant reached the study store, then check every read answers."""
    reads = study_reads(api, study)
    wait_for(lambda: reads["details"](who).status_code == 200, f"{who.username}'s grant")
    for name, read in reads.items():
        response = read(who)
        assert response.status_code == 200, (name, response.status_code, response.text[:300])
    assert listed(api, who, study.study_uid)


def refused_at_once(
    api: Gateway, who: Person, study: DemoStudy, answer: httpx.Response, rule: str
) -> None:
    """Right after `answer`: every read of the study is refused, and it is listed nowhere;
    the answer said it reached every study-store process."""
    granted = []
    for name, read in study_reads(api, study).items():
        response = read(who)
        if response.status_code not in REFUSED:
            granted.append((name, response.status_code))
        elif name == "details":
            problem(response, response.status_code, rule)
    assert not granted, f"still served right after the answer: {granted}"
    assert not listed(api, who, study.study_uid), "still listed right after the answer"
    assert answer.headers.get(PROPAGATED) == "true", dict(answer.headers)


def upload(api: Gateway, world: SimpleNamespace, what: str) -> DemoStudy:
    """A new study of the sender's department, with a report."""
    study = api.upload(world.sender, f"CT {what}", f"Atonce^{what.title()}", BIRTH_DATE)
    report = {"text": f"Report of {what}."}
    path = f"/api/studies/{study.study_uid}/report"
    ok(api.client.put(path, json=report, headers=world.sender.headers))
    return study


def share(api: Gateway, by: Person, studies: list[DemoStudy], to: list[Person], **kw) -> str:
    body = {
        "study_uids": [s.study_uid for s in studies],
        "recipients": [{"kind": "user", "id": p.user_id} for p in to],
        "access_level": "images_report_read",
        "two_factor": False,
        "send_mail": False,
        **kw,
    }
    return api.shared(by, **body)


def test_a_revoked_recipient_is_refused_on_the_next_request(api: Gateway, world):
    study = upload(api, world, "recipient")
    people = [api.register(world.desk, name, roles=["physician"]) for name in ("Ann", "Bo", "Cy")]
    bucket_id = share(api, world.sender, [study], people)
    for person in people:
        opens(api, person, study)
    for i, person in enumerate(people):
        answer = api.client.delete(
            f"/api/shares/{bucket_id}/recipients/{person.user_id}", headers=world.sender.headers
        )
        ok(answer)
        refused_at_once(api, person, study, answer, "GrantRevoked")
        for other in people[i + 1 :]:
            assert ok(api.study(other, study.study_uid))["access"]["bucket_id"] == bucket_id


def test_a_study_removed_from_the_bucket_is_refused_on_the_next_request(api: Gateway, world):
    studies = [upload(api, world, f"study {n}") for n in range(3)]
    recipient = api.register(world.desk, "Dirk", roles=["physician"])
    bucket_id = share(api, world.sender, studies, [recipient])
    for study in studies:
        opens(api, recipient, study)
    for i, study in enumerate(studies):
        answer = api.client.delete(
            f"/api/shares/{bucket_id}/studies/{study.study_uid}", headers=world.sender.headers
        )
        ok(answer)
        refused_at_once(api, recipient, study, answer, "GrantRevoked")
        for other in studies[i + 1 :]:
            ok(api.study(recipient, other.study_uid))


def test_a_revoked_bucket_is_refused_on_the_next_request(api: Gateway, world):
    recipient = api.register(world.desk, "Els", roles=["physician"])
    shares = []
    for n in range(3):
        study = upload(api, world, f"bucket {n}")
        shares.append((study, share(api, world.sender, [study], [recipient])))
    for study, _ in shares:
        opens(api, recipient, study)
    for study, bucket_id in shares:
        answer = api.client.delete(f"/api/shares/{bucket_id}", headers=world.sender.headers)
        assert ok(answer)["status"] == "revoked"
        refused_at_once(api, recipient, study, answer, "GrantRevoked")


@pytest.mark.parametrize("revoke", ["the re-sharer", "the whole bucket"])
def test_a_reshare_whose_sender_loses_the_parent_is_refused_on_the_next_request(
    api: Gateway, world, revoke: str
):
    study = upload(api, world, f"cascade {revoke}")
    colleague = api.register(world.desk, "Fien", roles=["physician"])
    third = api.register(world.desk, "Gust", roles=["physician"])
    parent_id = share(api, world.sender, [study], [colleague], allow_further_sharing=True)
    opens(api, colleague, study)
    child_id = share(api, colleague, [study], [third], parent_bucket_id=parent_id)
    opens(api, third, study)
    assert ok(api.study(third, study.study_uid))["access"]["bucket_id"] == child_id

    path = f"/api/shares/{parent_id}"
    if revoke == "the re-sharer":
        path += f"/recipients/{colleague.user_id}"
    answer = api.client.delete(path, headers=world.sender.headers)
    ok(answer)
    refused_at_once(api, third, study, answer, "GrantRevoked")
    child = ok(api.client.get(f"/api/shares/{child_id}", headers=colleague.headers))
    assert child["status"] == "revoked", "the cascade ended the re-share in the share service"


def test_a_locked_two_factor_bucket_is_refused_on_the_next_request(api: Gateway, world):
    study = upload(api, world, "lock")
    holder = api.register(world.desk, "Hanne", roles=["physician"])
    guesser = api.register(world.desk, "Ivo", roles=["physician"])
    bucket_id = share(api, world.sender, [study], [holder, guesser], two_factor=True)
    ok(api.verify_otp(holder, bucket_id, api.request_otp(holder, bucket_id)))
    opens(api, holder, study)

    code = api.request_otp(guesser, bucket_id)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(4):
        problem(api.verify_otp(guesser, bucket_id, wrong), 401, "WrongOTP")
    answer = api.verify_otp(guesser, bucket_id, wrong)
    problem(answer, 423, "BucketIsLocked")
    refused_at_once(api, holder, study, answer, "BucketIsLocked")


def service_reads(api: Gateway, uid: str) -> dict[str, Callable[[dict[str, str]], httpx.Response]]:
    """A read of every service that verifies tokens itself (the service desk may do all)."""
    c = api.client
    return {
        "share": lambda h: c.get("/api/shares", params={"study_uid": uid}, headers=h),
        "study-store": lambda h: c.get(f"/api/studies/{uid}", headers=h),
        "study-store overview": lambda h: c.get("/api/studies", headers=h),
        "study-store hot": lambda h: c.get(f"/dicomweb/studies/{uid}/metadata", headers=h),
        "audit": lambda h: c.get(f"/api/audit/studies/{uid}/log", headers=h),
        "notify": lambda h: c.get("/api/notifications", params={"limit": 1}, headers=h),
    }


def department_admin(api: Gateway, world: SimpleNamespace, first_name: str) -> Person:
    """A new physician and admin of the world's department."""
    return api.register(
        world.desk,
        first_name,
        roles=["physician", "department_admin"],
        department_ids=[world.department],
        admin_of=[world.department],
    )


def all_answer(reads: dict[str, Callable[[dict[str, str]], httpx.Response]], headers) -> None:
    """Once the study store has their study, every service answers the token."""
    wait_for(lambda: reads["study-store"](headers).status_code == 200, "their study")
    for name, read in reads.items():
        response = read(headers)
        assert response.status_code == 200, (name, response.status_code, response.text)


def ended_everywhere(
    reads: dict[str, Callable[[dict[str, str]], httpx.Response]],
    headers: dict[str, str],
    answer: httpx.Response,
    reason: str,
) -> None:
    accepted = []
    for name, read in reads.items():
        response = read(headers)
        if response.status_code != 401:
            accepted.append((name, response.status_code))
        else:
            assert reason in problem(response, 401, "SessionEnded")["detail"]
    assert not accepted, f"the ended token still worked right after the answer: {accepted}"
    assert answer.headers.get(PROPAGATED) == "true", dict(answer.headers)


def test_a_logged_out_token_is_refused_by_every_service_on_the_next_request(
    api: Gateway, world, platform: LocalPlatform
):
    uid = upload(api, world, "logout").study_uid
    user, password = platform.bootstrap_user, platform.bootstrap_password
    other = api.login(user, password)
    reads = service_reads(api, uid)
    for _ in range(3):
        headers = api.login(user, password)
        for name, read in reads.items():
            response = read(headers)
            assert response.status_code == 200, (name, response.status_code, response.text)
        answer = api.client.post("/api/auth/logout", headers=headers)
        assert answer.status_code == 204
        ended_everywhere(reads, headers, answer, "logged out")
    for name, read in reads.items():
        assert read(other).status_code == 200, f"{name}: the other session lives on"


def test_a_deactivated_account_is_refused_by_every_service_on_the_next_request(api: Gateway, world):
    study = upload(api, world, "deactivation")
    leaving = department_admin(api, world, "Jo")
    reads = service_reads(api, study.study_uid)
    del reads["notify"]  # only operators read the delivery log
    all_answer(reads, leaving.headers)
    answer = api.client.post(f"/api/users/{leaving.user_id}/deactivate", headers=world.desk)
    assert answer.status_code in (200, 204), answer.text
    ended_everywhere(reads, leaving.headers, answer, "deactivated")


def logged_in(api: Gateway, who: Person) -> tuple[dict[str, str], str]:
    """A new session of `who`: its bearer headers and its refresh token."""
    tokens = ok(
        api.client.post(
            "/api/auth/login", json={"username": who.username, "password": who.password}
        )
    )
    return {"Authorization": f"Bearer {tokens['access_token']}"}, tokens["refresh_token"]


def refreshed(api: Gateway, refresh_token: str) -> httpx.Response:
    return api.client.post("/api/auth/refresh", json={"refresh_token": refresh_token})


def test_a_token_of_roles_taken_away_is_refused_by_every_service_on_the_next_request(
    api: Gateway, world
):
    """A token carries its holder's roles and departments: one issued before the service desk
    changed them would act with the old ones until it expires (in share and audit, which
    decide on the token's claims: a removed admin could still share the department's studies).
    It is refused; the session's refresh token gives a token with the new roles at once."""
    study = upload(api, world, "roles")
    leaving = department_admin(api, world, "Kato")
    headers, refresh_token = logged_in(api, leaving)
    reads = service_reads(api, study.study_uid)
    del reads["notify"]  # only operators read the delivery log
    # identity decides a department admin's commands on the token's claims too
    department = f"/api/departments/{world.department}"
    reads["identity"] = lambda h: api.client.get(department, headers=h)
    all_answer(reads, headers)
    assert reads["identity"](headers).json()["admin_ids"] is not None, "the admin's view"
    issued = ok(api.client.post(f"/api/studies/{study.study_uid}/viewer-token", headers=headers))
    viewer = {"Authorization": f"Bearer {issued['token']}"}
    metadata = f"/dicomweb/studies/{study.study_uid}/metadata"
    assert api.client.get(metadata, headers=viewer).status_code == 200
    roles = {"roles": ["physician"], "department_ids": [], "admin_of": []}
    answer = api.client.put(f"/api/users/{leaving.user_id}/roles", json=roles, headers=world.desk)
    assert answer.status_code == 200, answer.text
    ended_everywhere(reads, headers, answer, "roles changed")
    problem(api.client.get(metadata, headers=viewer), 401, "SessionEnded")
    outsider = api.register(world.desk, "Lien", roles=["physician"])
    body = {
        "study_uids": [study.study_uid],
        "recipients": [{"kind": "user", "id": outsider.user_id}],
        "access_level": "images_report_read",
        "reason": "after leaving",
        "patient_agreed": True,
        "unlimited": True,
        "send_mail": False,
    }
    problem(api.client.post("/api/shares", json=body, headers=headers), 401, "SessionEnded")

    renewed = ok(refreshed(api, refresh_token))
    fresh = {"Authorization": f"Bearer {renewed['access_token']}"}
    me = ok(api.client.get("/api/users/me", headers=fresh))
    assert (me["roles"], me["department_ids"], me["admin_of"]) == (["physician"], [], [])
    # no way to the study left: share and the study store answer as for one never received
    problem(api.client.post("/api/shares", json=body, headers=fresh), 422, "StudyNotKnown")
    assert reads["audit"](fresh).status_code == 403
    problem(reads["study-store"](fresh), 404, "StudyNotFound")
    assert ok(reads["identity"](fresh))["admin_ids"] is None, "no longer its admin"


def test_changing_one_s_password_ends_one_s_other_sessions(api: Gateway, world):
    """A stolen session (its access and refresh tokens) ends when the owner changes their
    password; the session the owner changed it in refreshes its token and goes on."""
    owner = api.register(world.desk, "Mira", roles=["physician"])
    mine, my_refresh = logged_in(api, owner)
    stolen, stolen_refresh = logged_in(api, owner)
    reads = service_reads(api, "1.2.3.4")
    del reads["notify"], reads["audit"]  # a physician reads neither
    del reads["study-store"], reads["study-store hot"]  # no study: these answer 404
    for name, read in reads.items():
        assert read(stolen).status_code == 200, name
    change = {"current_password": owner.password, "new_password": "Another-Long-Secret-9"}
    answer = api.client.post("/api/users/me/password", json=change, headers=mine)
    assert answer.status_code == 204, answer.text
    ended_everywhere(reads, stolen, answer, "password was changed")
    problem(refreshed(api, stolen_refresh), 401, "InvalidRefreshToken")
    renewed = ok(refreshed(api, my_refresh))
    again = {"Authorization": f"Bearer {renewed['access_token']}"}
    for name, read in reads.items():
        assert read(again).status_code == 200, name
