"""Real data for fuzzing the whole platform through the gateway: a department with its admin,
a physician the admin shared an uploaded study with, a group, a reference number, and a spare
user and share that destructive operations may use up."""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related, stable_uid

PASSWORD = "Fuzz-Password-2026!"  # test accounts on a throwaway platform


#: operations that end what they touch get the spare share, recipient and user
SPENDING = ("DELETE ", "/deactivate", "/roles", "/password", "/unlock", "/totp")
#: failed logins count per source address: sent anonymously only, since more of them would
#: lock this machine's address out of logging in for the rest of the test session
LOGINS = ("/api/auth/login", "/api/auth/patient-login")
LOGOUT = "/api/auth/logout"


@dataclass
class World:
    """Ids to aim generated requests at, and the headers of each principal."""

    principals: dict[str, dict[str, str]]
    ids: dict[str, str]
    #: ids for operations that end what they touch (revocations, deactivations)
    spare_ids: dict[str, str]
    #: second sessions of the same principals, for logout to end
    spare_sessions: dict[str, dict[str, str]]

    def aim(self, case: Any) -> None:
        """Point the case's path parameters at real data, so that answers are not all 404; about
        one case in five keeps its generated ones (the same cases every run)."""
        generated = json.dumps(case.path_parameters or {}, sort_keys=True, default=str)
        if zlib.crc32(generated.encode()) % 5 == 0:
            return
        ids = dict(self.ids)
        if any(word in f"{case.method.upper()} {case.path}" for word in SPENDING):
            ids.update(self.spare_ids)
        for name in case.path_parameters or {}:
            if name in ids:
                case.path_parameters[name] = ids[name]

    def senders(self, case: Any) -> dict[str, dict[str, str]]:
        """Everyone the case is sent as (`{who: headers}`), anonymous first."""
        if case.path in LOGINS:
            return {"anonymous": {}}
        return {
            "anonymous": {},
            **(self.spare_sessions if case.path == LOGOUT else self.principals),
        }


def wait_for(action: Callable[[], httpx.Response], what: str, timeout: float = 60) -> Any:
    """`action()`'s JSON body once it answers 2xx (the read sides are eventually consistent)."""
    deadline = time.monotonic() + timeout
    while True:
        response = action()
        if response.is_success:
            return response.json() if response.content else None
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {response.status_code} {response.text[:300]}")
        time.sleep(0.3)


def build_world(client: httpx.Client, desk_user: str, desk_password: str) -> World:
    """Everything made through the gateway's public API, as a department would."""
    tag = uuid.uuid4().hex[:8]

    def login(username: str, password: str) -> dict[str, str]:
        body = {"username": username, "password": password}
        token = wait_for(lambda: client.post("/api/auth/login", json=body), f"login {username}")
        return {"Authorization": f"Bearer {token['access_token']}"}

    desk = login(desk_user, desk_password)
    department = {"name": f"Radiology fuzz {tag}", "country": "be", "kind": "radiology"}
    dep_id = _id(client.post("/api/departments", json=department, headers=desk), "department_id")

    def user(name: str, roles: list[str], admin: bool = False) -> str:
        body: dict[str, Any] = {
            "username": f"{name}.{tag}",
            "password": PASSWORD,
            "first_name": "Fuzz",
            "last_name": name.capitalize(),
            "email": f"{name}.{tag}@fuzz.studyshare.local",
            "roles": roles,
        }
        if "department_staff" in roles:
            body["department_ids"] = [dep_id]
        if admin:
            body["admin_of"] = [dep_id]
        return _id(client.post("/api/users", json=body, headers=desk), "user_id")

    user("admin", ["department_admin", "department_staff"], admin=True)
    physician_id = user("physician", ["physician"])
    spare_id = user("spare", ["physician"])
    admin = login(f"admin.{tag}", PASSWORD)
    physician = login(f"physician.{tag}", PASSWORD)

    study = DemoStudy(
        f"fuzz-{tag}", f"FUZZ-{tag}", "Fuzz^Patient", "19800101", "O", "Fuzz CT", "OT",
        "20260101", f"ACC-{tag}",
    )  # fmt: skip
    body, content_type = multipart_related([instance(study, 1, 1)])
    headers = {**admin, "Content-Type": content_type, "Accept": "application/dicom+json"}
    wait_for(lambda: client.post("/dicomweb/studies", content=body, headers=headers), "the upload")
    uid = study.study_uid

    def share(recipient_id: str) -> str:
        body = {
            "study_uids": [uid],
            "recipients": [{"kind": "user", "id": recipient_id}],
            "access_level": "images_report_write",
            "reason": "fuzzing",
            "patient_agreed": True,
            "two_factor": False,
            "send_mail": False,
        }
        made = wait_for(lambda: client.post("/api/shares", json=body, headers=admin), "a share")
        return made["bucket_id"]

    bucket_id, spare_bucket_id = share(physician_id), share(spare_id)
    wait_for(
        lambda: client.get(f"/dicomweb/studies/{uid}/metadata", headers=physician),
        "the physician's access in the study store",
    )
    group = {"name": f"Practice fuzz {tag}", "member_ids": [physician_id, spare_id]}
    group_id = _id(client.post("/api/groups", json=group, headers=desk), "group_id")
    path = f"/api/studies/{uid}/reference-numbers"
    reference = wait_for(lambda: client.post(path, json={}, headers=admin), "a reference number")
    favorite = {"kind": "user", "id": physician_id}
    favorite_id = _id(client.post("/api/favorites", json=favorite, headers=admin), "favorite_id")

    ids = {
        "study_uid": uid,
        "uid": uid,
        "series_uid": stable_uid(f"{study.key}/1"),
        "sop_uid": stable_uid(f"{study.key}/1/1"),
        "frames": "1",
        "frame": "1",
        "bucket_id": bucket_id,
        "recipient_id": physician_id,
        "department_id": dep_id,
        "group_id": group_id,
        "user_id": spare_id,
        "reference_id": reference["reference_id"],
        "favorite_id": favorite_id,
    }
    spare_ids = {"bucket_id": spare_bucket_id, "recipient_id": spare_id}
    logins = {
        "service_desk": (desk_user, desk_password),
        "department_admin": (f"admin.{tag}", PASSWORD),
        "physician": (f"physician.{tag}", PASSWORD),
    }
    return World(
        principals={"service_desk": desk, "department_admin": admin, "physician": physician},
        ids=ids,
        spare_ids=spare_ids,
        spare_sessions={name: login(*credentials) for name, credentials in logins.items()},
    )


def _id(response: httpx.Response, key: str) -> str:
    assert response.is_success, f"{response.request.url}: {response.status_code} {response.text}"
    body = response.json()
    return str(body.get(key) or body["id"])
