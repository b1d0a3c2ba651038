"""A logged-out or revoked session's access token stops working at every service, through the
gateway only: share, study-store (hot DICOMweb route included) and audit verify tokens
themselves; the logout answers once every API process has the end (identity's list of ended
sessions, followed by each process), so the very next request is refused (issue 15, point
13)."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest

from studyshare.devstack.platform import LocalPlatform

from .storykit import Gateway, ok, problem, unique, wait_for


@pytest.fixture(scope="module")
def world(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    """A department and a physician (and admin) of it who uploaded one study."""
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department_id = api.radiology_department(desk, f"Radiology {unique('')}")
    physician = api.register(  # also the department's admin: audit lets them read its log
        desk,
        "Pieter",
        roles=["physician", "department_admin"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    study = api.upload(physician, "CT logout", "Logout^Alice", "19800214")
    return SimpleNamespace(desk=desk, department_id=department_id, physician=physician, study=study)


def reads(api: Gateway, uid: str) -> dict[str, Callable[[dict[str, str]], httpx.Response]]:
    """One read per service that verifies tokens locally."""
    c = api.client
    return {
        "share": lambda h: c.get("/api/shares", params={"study_uid": uid}, headers=h),
        "study-store": lambda h: c.get(f"/api/studies/{uid}", headers=h),
        "study-store hot": lambda h: c.get(f"/dicomweb/studies/{uid}/metadata", headers=h),
        "audit": lambda h: c.get(f"/api/audit/studies/{uid}/log", headers=h),
    }


def refused_everywhere(
    reads: dict[str, Callable[[dict[str, str]], httpx.Response]], headers: dict[str, str]
) -> dict[str, httpx.Response]:
    """Every read, sent right after the answer, is already refused (401); the refusals."""
    refusals = {name: read(headers) for name, read in reads.items()}
    accepted = {n: r.status_code for n, r in refusals.items() if r.status_code != 401}
    assert not accepted, f"still accepted right after the answer: {accepted}"
    return refusals


def test_a_logged_out_token_is_refused_by_every_service_on_the_next_request(
    api: Gateway, world: SimpleNamespace
):
    physician = world.physician
    headers = api.login(physician.username, physician.password)
    other_session = api.login(physician.username, physician.password)
    services = reads(api, world.study.study_uid)
    for name, read in services.items():
        response = read(headers)
        assert response.status_code == 200, (name, response.status_code, response.text)

    answer = api.client.post("/api/auth/logout", headers=headers)
    refusals = refused_everywhere(services, headers)
    assert answer.status_code == 204 and answer.headers["studyshare-propagated"] == "true"
    for response in refusals.values():
        body = problem(response, 401, "SessionEnded")
        assert "logged out" in body["detail"]
    for name, read in services.items():
        assert read(other_session).status_code == 200, f"{name}: the other session lives on"


def test_a_patients_logged_out_token_is_refused_by_every_service_on_the_next_request(
    api: Gateway, world: SimpleNamespace
):
    uid, physician = world.study.study_uid, world.physician
    number = ok(
        api.client.post(
            f"/api/studies/{uid}/reference-numbers", json={}, headers=physician.headers
        ),
        201,
    )["reference_number"]
    api.logged(physician, uid, [("ReferenceNumberIssued", lambda e: True)])

    def patient_login() -> httpx.Response | None:
        r = api.client.post(
            "/api/auth/patient-login",
            json={"reference_number": number, "date_of_birth": "1980-02-14"},
        )
        return r if r.status_code == 200 else None

    token = wait_for(patient_login, "the reference number known to identity").json()
    patient = {"Authorization": f"Bearer {token['access_token']}"}
    c = api.client
    services = {
        "study-store": lambda h: c.get(f"/api/studies/{uid}", headers=h),
        "study-store hot": lambda h: c.get(f"/dicomweb/studies/{uid}/metadata", headers=h),
        "audit": lambda h: c.get("/api/audit/my-study/openings", headers=h),
    }
    for name, read in services.items():
        response = read(patient)
        assert response.status_code == 200, (name, response.status_code, response.text)

    answer = c.post("/api/auth/logout", headers=patient)
    refusals = refused_everywhere(services, patient)
    assert answer.status_code == 204 and answer.headers["studyshare-propagated"] == "true"
    for response in refusals.values():
        assert "logged out" in problem(response, 401, "SessionEnded")["detail"]


def test_a_password_reset_by_the_service_desk_ends_every_session_of_the_account(
    api: Gateway, world: SimpleNamespace
):
    physician = world.physician
    first = api.login(physician.username, physician.password)
    second = api.login(physician.username, physician.password)
    services = reads(api, world.study.study_uid)
    assert services["share"](first).status_code == 200
    physician.password = f"Reset-{unique('')}-Pass!"
    ok(
        api.client.post(
            f"/api/users/{physician.user_id}/password",
            json={"new_password": physician.password},
            headers=world.desk,
        ),
        204,
    )
    for headers in (first, second):
        refusals = refused_everywhere(services, headers)
        assert "password was reset" in problem(refusals["share"], 401, "SessionEnded")["detail"]
    time.sleep(1.1)  # a token issued within the second of the reset is refused too
    fresh = api.login(physician.username, physician.password)
    assert services["share"](fresh).status_code == 200
