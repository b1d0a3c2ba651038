"""Issue 15, point 11: what the platform tells about people and places.

User details, roles, memberships and department network addresses are visible only to those
who administer them; the client's `X-Correlation-ID` is taken only in a safe format and never
as an audit fact; the external-login callback takes only a `state` identity handed out, once
(through the platform's stand-in eID, `STUDYSHARE_DEMO_EID`; its TOTP step is clicked through
in `tests/portal/test_account_browser.py`, and expiry and linking CSRF are proven in identity's
own tests).
"""

from __future__ import annotations

import re
import time
import uuid
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, Person, ok, problem, unique, wait_for

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ADMINISTRATIVE = ("roles", "department_ids", "admin_of", "username", "status", "totp_enabled")


@pytest.fixture(scope="module")
def world(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department_id = api.radiology_department(desk, f"Radiology {unique('')}")
    admin = api.register(
        desk,
        "Dora",
        roles=["department_admin", "department_staff"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    assigned = {"user_id": admin.user_id}
    path = f"/api/departments/{department_id}/admins"
    ok(api.client.post(path, json=assigned, headers=desk), 204)
    staff = api.register(admin.headers, "Stan", roles=["physician"], department_ids=[department_id])
    outsider = api.register(desk, "Oscar", roles=["physician"])
    pacs = {
        "name": f"PACS {unique('')}",
        "kind": "pacs",
        "pacs": {"ae_title": "SECRETPACS", "host": "10.20.30.40", "port": 11112},
        "rsw": {"ae_title": "RSWNODE", "host": "rsw.internal.example", "port": 104},
    }
    pacs_id = ok(api.client.post("/api/departments", json=pacs, headers=desk), 201)["department_id"]
    return SimpleNamespace(
        desk=desk,
        department_id=department_id,
        pacs_id=pacs_id,
        admin=admin,
        staff=staff,
        outsider=outsider,
    )


def test_a_user_s_roles_and_memberships_are_for_those_who_administer_them(
    api: Gateway, world: SimpleNamespace
):
    w = world
    seen = ok(api.client.get(f"/api/users/{w.staff.user_id}", headers=w.outsider.headers))
    assert (seen["first_name"], seen["last_name"]) == ("Stan", "Story"), "the public contact"
    leaked = {k: seen.get(k) for k in ADMINISTRATIVE if seen.get(k)}
    assert not leaked, f"an outsider sees {leaked}"
    assert seen.get("email") is None and seen.get("mobile") is None, "not made public"
    for administrator in (w.admin.headers, w.desk):
        full = ok(api.client.get(f"/api/users/{w.staff.user_id}", headers=administrator))
        assert full["department_ids"] == [w.department_id] and full["roles"] == ["physician"]
        assert full["username"] == w.staff.username
    own = ok(api.client.get("/api/users/me", headers=w.staff.headers))
    assert own["roles"] == ["physician"], "everyone sees their own"


def test_department_network_addresses_and_admins_are_for_its_administrators(
    api: Gateway, world: SimpleNamespace
):
    w = world
    seen = ok(api.client.get(f"/api/departments/{w.pacs_id}", headers=w.outsider.headers))
    assert seen["name"].startswith("PACS ")
    assert "10.20.30.40" not in str(seen) and "rsw.internal.example" not in str(seen)
    assert not seen.get("admin_ids")
    radiology = ok(
        api.client.get(f"/api/departments/{w.department_id}", headers=w.outsider.headers)
    )
    assert not radiology.get("admin_ids"), "who administers a department is not public"
    mine = ok(api.client.get(f"/api/departments/{w.department_id}", headers=w.admin.headers))
    assert mine["admin_ids"] == [w.admin.user_id]
    full = ok(api.client.get(f"/api/departments/{w.pacs_id}", headers=w.desk))
    assert full["pacs"]["host"] == "10.20.30.40" and full["rsw"]["port"] == 104


def test_a_group_s_composition_is_for_its_members(api: Gateway, world: SimpleNamespace):
    w = world
    group_id = ok(
        api.client.post(
            "/api/groups",
            json={"name": f"Practice {unique('')}", "primary_contact_id": w.staff.user_id},
            headers=w.desk,
        ),
        201,
    )["group_id"]
    ok(api.client.get(f"/api/groups/{group_id}", headers=w.staff.headers))
    problem(
        api.client.get(f"/api/groups/{group_id}", headers=w.outsider.headers), 404, "GroupNotFound"
    )


def test_a_correlation_id_is_taken_only_in_a_safe_format(api: Gateway, world: SimpleNamespace):
    w = world
    safe = f"client-{uuid.uuid4()}"
    echoed = api.client.get(
        "/api/users/me", headers={**w.outsider.headers, "X-Correlation-ID": safe}
    )
    assert echoed.headers["x-correlation-id"] == safe
    for unsafe in ("a" * 200, "x\tinjected=1", "<script>", "../../etc", "a b", ""):
        r = api.client.get(
            "/api/users/me", headers={**w.outsider.headers, "X-Correlation-ID": unsafe}
        )
        assert r.status_code == 200
        assert UUID.match(r.headers["x-correlation-id"]), (unsafe, r.headers["x-correlation-id"])


def test_a_correlation_id_is_no_audit_fact_every_download_stays_a_row(
    api: Gateway, world: SimpleNamespace
):
    """Audit counted the registrations of one correlation id as one download: a client sending
    the same id for every download showed one download in the Access tab."""
    w = world
    study = api.upload(w.staff, "CT download", "Audit^Patient", "19700101")
    uid = study.study_uid
    chosen = {"X-Correlation-ID": f"one-{uuid.uuid4()}"}
    for _ in range(3):
        r = api.client.get(f"/api/studies/{uid}/download", headers={**w.staff.headers, **chosen})
        assert r.status_code == 200, r.text
        time.sleep(0.2)

    def three_rows() -> list | None:
        r = api.client.get(f"/api/audit/studies/{uid}/access", headers=w.admin.headers)
        rows = r.json()["downloads"] if r.status_code == 200 else []
        return rows if len(rows) >= 3 else None

    rows = wait_for(three_rows, "three download rows in the Access tab", timeout=30)
    assert [row["user_id"] for row in rows] == [w.staff.user_id] * 3


EID = "/api/auth/external/demo-eid"


def test_the_external_login_callback_takes_only_a_state_handed_out_here_and_only_once(
    api: Gateway, platform: LocalPlatform, world: SimpleNamespace
):
    redirect = f"{platform.gateway_url}/login/external/demo-eid"
    number = unique("85.07.30-")

    def start(linking: Person | None = None) -> str:
        if linking is None:
            return ok(api.client.get(f"{EID}/start", params={"redirect_uri": redirect}))["state"]
        body = {"redirect_uri": redirect, "current_password": linking.password}
        return ok(api.client.post(f"{EID}/link/start", json=body, headers=linking.headers))["state"]

    def signed_by_the_provider(state: str) -> dict[str, str]:
        """What the provider sends the browser back with (its signature over state and
        subject): an attacker can obtain this for a state of their choosing."""
        form = {"state": state, "redirect_uri": redirect, "national_number": number}
        answer = api.client.post(
            f"{EID}/authorize",
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        return dict(parse_qsl(urlsplit(answer.headers["location"]).query))

    user = world.outsider
    linked = signed_by_the_provider(start(user))
    ok(api.client.post(f"{EID}/link", json=linked, headers=user.headers), 204)

    forged = signed_by_the_provider("made-up-by-an-attacker")
    problem(api.client.get(f"{EID}/callback", params=forged), 401, "ExternalLoginStateInvalid")
    genuine = signed_by_the_provider(start())
    tokens = ok(api.client.get(f"{EID}/callback", params=genuine))
    me = ok(api.client.get("/api/users/me", headers=bearer(tokens["access_token"])))
    assert me["user_id"] == user.user_id
    replayed = api.client.get(f"{EID}/callback", params=genuine)
    problem(replayed, 401, "ExternalLoginStateInvalid")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
