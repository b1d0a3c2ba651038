"""Demo data, loaded through the gateway's public API only (ARCHITECTURE.md section 6).

Every step is tolerant: a refusal or a missing service prints a warning and the rest goes on.
Running it twice is fine: existing accounts are logged into instead of created again, and the
studies have stable UIDs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import typer

from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related

T = TypeVar("T")

#: the calling AE title `make run`'s C-STORE receiver files under the demo department
CALLING_AE_TITLE = "DEMO_CT"
DEPARTMENT = {
    "name": "Radiology (demo)",
    "country": "be",
    "kind": "radiology",
    "email": "radiology@demo.studyshare.local",
}
ADMIN = {
    "username": "rad.admin",
    "password": "Demo-Admin-2026!",
    "first_name": "Rita",
    "last_name": "Admin",
    "email": "rad.admin@demo.studyshare.local",
    "mobile": "+32470000001",
    "roles": ["department_admin", "department_staff"],
    "language": "en",
}
PHYSICIANS = [
    {
        "username": "dr.peeters",
        "password": "Demo-Physician-2026!",
        "first_name": "Pieter",
        "last_name": "Peeters",
        "email": "dr.peeters@demo.studyshare.local",
        "mobile": "+32470000002",
        "roles": ["physician"],
        "language": "nl",
    },
    {
        "username": "dr.dubois",
        "password": "Demo-Physician-2026!",
        "first_name": "Claire",
        "last_name": "Dubois",
        "email": "dr.dubois@demo.studyshare.local",
        "mobile": "+32470000003",
        "roles": ["physician"],
        "language": "fr",
    },
]
PRACTICE = {"name": "Group practice De Linde (demo)", "email": "delinde@demo.studyshare.local"}
STUDIES = [
    DemoStudy(
        "demo-ct-thorax",
        "DEMO-0001",
        "Demo^Alice",
        "19800214",
        "F",
        "CT thorax",
        "CT",
        "20260105",
        "ACC-DEMO-0001",
    ),
    DemoStudy(
        "demo-mr-knee",
        "DEMO-0002",
        "Demo^Bob",
        "19721130",
        "M",
        "MR knee left",
        "MR",
        "20260211",
        "ACC-DEMO-0002",
    ),
]


class StepFailed(RuntimeError):
    pass


@dataclass
class DemoLoader:
    client: httpx.Client
    warnings: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def step(self, title: str, action: Callable[[], T]) -> T | None:
        try:
            result = action()
        except Exception as exc:  # tolerant by design: report and go on
            exc = exc if str(exc) else type(exc).__name__  # type: ignore[assignment]
            self.warnings.append(f"{title}: {exc}")
            typer.secho(f"  ! demo step skipped: {title}: {exc}", fg="yellow", err=True)
            return None
        typer.echo(f"  - {title}")
        return result

    def call(
        self, method: str, path: str, token: str | None, ok: tuple[int, ...] = (200, 201), **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self.client.request(method, path, headers=headers, **kw)
        if response.status_code not in ok:
            raise StepFailed(f"{method} {path} -> {response.status_code} {_detail(response)}")
        return response

    def login(self, username: str, password: str) -> str:
        body = {"username": username, "password": password}
        return self.call("POST", "/api/auth/login", None, json=body).json()["access_token"]

    def try_login(self, username: str, password: str) -> str | None:
        try:
            return self.login(username, password)
        except StepFailed:
            return None

    def login_eventually(self, username: str, password: str, wait_s: float = 10.0) -> str | None:
        """A new account may take a moment to reach the read side of identity."""
        deadline = time.monotonic() + wait_s
        while True:
            token = self.try_login(username, password)
            if token is not None or time.monotonic() > deadline:
                return token
            time.sleep(0.5)

    def me(self, token: str) -> dict[str, Any]:
        return self.call("GET", "/api/users/me", token).json()

    def ensure_user(
        self, desk: str, user: dict[str, Any], department_id: str | None, admin: bool = False
    ) -> str:
        """The user's id: log in when the account exists, register it otherwise."""
        token = self.try_login(user["username"], user["password"])
        if token is not None:
            return _id(self.me(token), "user_id")
        body = dict(user)
        if department_id:
            body["department_ids"] = [department_id]
            if admin:
                body["admin_of"] = [department_id]
        user_id = _id(self.call("POST", "/api/users", desk, json=body).json(), "user_id")
        self.created.append(user["username"])
        return user_id

    def upload(self, token: str, study: DemoStudy) -> str:
        body, content_type = multipart_related([instance(study, 1, 1), instance(study, 1, 2)])
        self.call(
            "POST",
            "/dicomweb/studies",
            token,
            ok=(200, 201, 202, 409),
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        )
        return study.study_uid

    def reference_number(self, token: str, study_uid: str, wait_s: float = 15.0) -> str:
        """The clear number a patient logs in with (the study store shows it to the
        department's staff in its list and in its issue answer, beside its `reference_id`, by
        which everything else names it). A just-uploaded study reaches the study store's read
        side through its worker."""
        path = f"/api/studies/{study_uid}/reference-numbers"
        deadline = time.monotonic() + wait_s
        while True:
            try:
                existing = self.call("GET", path, token).json()
                break
            except StepFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        items = existing.get("items", existing) if isinstance(existing, dict) else existing
        usable = [
            i
            for i in items or ()
            if isinstance(i, dict)
            and i.get("reference_number")  # None: sealed under another secret
            and i.get("usable", True)
            and not i.get("revoked")
        ]
        if usable:
            return _number(usable[0])
        return _number(self.call("POST", path, token, json={}).json())


def load_demo(
    gateway_url: str, user: str, password: str, timeout: float = 30.0
) -> list[tuple[str, str, str]]:
    """Load the demo data; returns the demo logins `(role, username, password)`."""
    typer.echo("loading demo data through the gateway ...")
    logins: list[tuple[str, str, str]] = []
    with httpx.Client(base_url=gateway_url, timeout=timeout, trust_env=False) as client:
        demo = DemoLoader(client)
        desk = demo.step("log in as the service desk", lambda: demo.login(user, password))
        if desk is None:
            typer.secho("  ! no service-desk login: demo data not loaded", fg="yellow", err=True)
            return logins

        department_id = _ensure_department(demo, desk)
        if demo.step(
            "department admin",
            lambda: demo.ensure_user(desk, ADMIN, department_id, admin=True),
        ):
            logins.append(("department admin", ADMIN["username"], ADMIN["password"]))
        physician_ids = []
        for physician in PHYSICIANS:
            uid = demo.step(
                f"physician {physician['username']}",
                lambda p=physician: demo.ensure_user(desk, p, None),
            )
            if uid:
                physician_ids.append(uid)
                logins.append(("physician", physician["username"], physician["password"]))
        # a practice is created with its physicians (accounts from an earlier run have one)
        if physician_ids and any(p["username"] in demo.created for p in PHYSICIANS):
            practice = {
                **PRACTICE,
                "primary_contact_id": physician_ids[0],
                "member_ids": physician_ids,
            }
            demo.step(
                "group practice with both physicians",
                lambda: _id(
                    demo.call("POST", "/api/groups", desk, json=practice).json(), "group_id"
                ),
            )

        uploader = demo.login_eventually(ADMIN["username"], ADMIN["password"]) or desk
        uploaded = [
            uid
            for study in STUDIES
            if (
                uid := demo.step(
                    f"study {study.description}", lambda s=study: demo.upload(uploader, s)
                )
            )
        ]
        for study_uid in uploaded[:1]:
            ref = demo.step(
                "patient reference number", lambda u=study_uid: demo.reference_number(uploader, u)
            )
            if ref:
                birth = STUDIES[0].birth_date
                logins.append(
                    ("patient", ref, f"date of birth {birth[:4]}-{birth[4:6]}-{birth[6:]}")
                )
    if demo.warnings:
        typer.secho(f"demo data: {len(demo.warnings)} step(s) skipped", fg="yellow", err=True)
    return logins


def demo_department(gateway_url: str, timeout: float = 30.0) -> str | None:
    """The demo department's id, once the demo data are loaded; else None."""
    with httpx.Client(base_url=gateway_url, timeout=timeout, trust_env=False) as client:
        return _admins_department(DemoLoader(client))


def _admins_department(demo: DemoLoader) -> str | None:
    """The department the demo admin belongs to (None: no such account or department yet)."""
    admin = demo.try_login(ADMIN["username"], ADMIN["password"])
    departments = (demo.me(admin).get("department_ids") or []) if admin else []
    return departments[0] if departments else None


def _ensure_department(demo: DemoLoader, desk: str) -> str | None:
    """The demo department: the one its admin belongs to if it exists already."""
    if (existing := _admins_department(demo)) is not None:
        return existing
    return demo.step(
        "department",
        lambda: _id(
            demo.call("POST", "/api/departments", desk, json=DEPARTMENT).json(), "department_id"
        ),
    )


def _id(body: Any, *keys: str) -> str:
    """The id in a response body, whatever the service called it."""
    if isinstance(body, str):
        return body
    for key in (*keys, "id"):
        if isinstance(body, dict) and body.get(key):
            return str(body[key])
    raise StepFailed(f"no {' or '.join((*keys, 'id'))} in the answer")


def _number(reference: Any) -> str:
    """The clear reference number of a study store answer (never its `reference_id`, which
    opens nothing: the patient types the number)."""
    number = reference.get("reference_number") if isinstance(reference, dict) else None
    if not isinstance(number, str) or not number:
        raise StepFailed("no reference_number in the answer")
    return number


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or "")[:200]
    return ""
