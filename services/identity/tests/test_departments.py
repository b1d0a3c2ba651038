"""Issue point 6: departments (sending sources, PACS destinations) and their policy, admins;
the policy travels as events for the other services."""

from __future__ import annotations


async def test_service_desk_creates_a_department_with_its_policy_and_admins(api):
    desk = await api.desk()
    created = await api.client.post(
        "/api/departments",
        json={
            "name": "Radiologie AZ Delta",
            "email": "rx@azdelta.be",
            "rsw": {"ae_title": "RSW", "host": "rsw.example", "port": 11112},
            "policy": {
                "default_validity_days": 14,
                "max_validity_days": 90,
                "unlimited_allowed": False,
                "reference_number_rule": {"length": 12, "alphabet": "digits"},
                "payment_required": True,
            },
        },
        headers=desk,
    )
    assert created.status_code == 201, created.text
    dep = created.json()["id"]
    view = (await api.client.get(f"/api/departments/{dep}", headers=desk)).json()
    assert view["policy"]["default_validity_days"] == 14
    assert view["policy"]["unlimited_allowed"] is False
    assert view["policy"]["reference_number_rule"] == {"length": 12, "alphabet": "digits"}
    [policy] = await api.events("DepartmentPolicySet")
    assert policy.aggregate_id == dep and policy.payload["max_validity_days"] == 90
    assert policy.payload["payment_required"] is True

    user_id = await api.register(desk, username="future.admin")
    assigned = await api.client.post(
        f"/api/departments/{dep}/admins", json={"user_id": user_id}, headers=desk
    )
    assert assigned.status_code == 204
    admin = await api.headers("future.admin", "a-long-password-1")
    claims = await api.verify(admin["Authorization"].split()[1])
    assert claims.admin_of == (dep,) and dep in claims.department_ids
    assert "department_admin" in claims.roles
    assert [e.payload["user_id"] for e in await api.events("DepartmentAdminAssigned")] == [user_id]
    assert (await api.client.get(f"/api/departments/{dep}", headers=desk)).json()["admin_ids"] == [
        user_id
    ]

    changed = await api.client.put(
        f"/api/departments/{dep}/policy",
        json={"default_validity_days": 30, "patient_otp_required": True},
        headers=admin,
    )
    assert changed.status_code == 204
    latest = (await api.events("DepartmentPolicySet"))[-1]
    assert latest.payload["patient_otp_required"] is True and latest.payload["set_by"] == user_id

    staff_id = await api.register(desk, username="staff")
    member = await api.client.post(
        f"/api/departments/{dep}/members", json={"user_id": staff_id}, headers=admin
    )
    assert member.status_code == 204
    staff = await api.verify(
        (await api.headers("staff", "a-long-password-1"))["Authorization"].split()[1]
    )
    assert staff.department_ids == (dep,) and "department_staff" in staff.roles
    removed = await api.client.delete(f"/api/departments/{dep}/admins/{user_id}", headers=desk)
    assert removed.status_code == 204
    after = await api.verify(
        (await api.headers("future.admin", "a-long-password-1"))["Authorization"].split()[1]
    )
    assert after.admin_of == () and "department_admin" not in after.roles
    assert len(await api.events("DepartmentAdminRemoved")) == 1


async def test_policy_rules_and_permissions(api):
    desk = await api.desk()
    dep = (await api.client.post("/api/departments", json={"name": "RX"}, headers=desk)).json()[
        "id"
    ]
    inverted = await api.client.put(
        f"/api/departments/{dep}/policy",
        json={"default_validity_days": 60, "max_validity_days": 30},
        headers=desk,
    )
    assert (
        inverted.status_code == 422 and inverted.json()["rule"] == "DefaultValidityExceedsMaximum"
    )
    await api.register(desk, username="outsider")
    outsider = await api.headers("outsider", "a-long-password-1")
    refused = await api.client.put(f"/api/departments/{dep}/policy", json={}, headers=outsider)
    assert refused.status_code == 403
    not_desk = await api.client.post("/api/departments", json={"name": "X"}, headers=outsider)
    assert not_desk.status_code == 403
    no_endpoint = await api.client.post(
        "/api/departments", json={"name": "PACS", "kind": "pacs"}, headers=desk
    )
    assert no_endpoint.status_code == 422 and no_endpoint.json()["rule"] == "PacsEndpointRequired"
    missing = await api.client.get("/api/departments/dep_nope", headers=desk)
    assert missing.status_code == 404 and missing.json()["rule"] == "DepartmentNotFound"
    assert len(await api.events("DepartmentPolicySet")) == 1, "refusals store nothing"


async def test_the_default_validity_is_one_calendar_month_and_the_zone_is_the_departments(api):
    """Issue 16, point 8: a policy without a default gives one calendar month (the share
    service adds it in the department's time zone), months or days as the department sets it;
    an unknown time zone is refused."""
    desk = await api.desk()
    dep = (await api.client.post("/api/departments", json={"name": "RX"}, headers=desk)).json()[
        "id"
    ]
    [created] = await api.events("DepartmentPolicySet")
    assert created.payload["default_validity_months"] == 1
    assert created.payload["time_zone"] is None  # the country's (share: Europe/Brussels)

    months = await api.client.put(
        f"/api/departments/{dep}/policy",
        json={"default_validity_months": 3, "time_zone": "Europe/Amsterdam"},
        headers=desk,
    )
    assert months.status_code == 204, months.text
    latest = (await api.events("DepartmentPolicySet"))[-1]
    assert latest.payload["default_validity_months"] == 3
    assert latest.payload["time_zone"] == "Europe/Amsterdam"
    view = (await api.client.get(f"/api/departments/{dep}", headers=desk)).json()["policy"]
    assert (view["default_validity_months"], view["default_validity_days"]) == (3, None)
    assert view["time_zone"] == "Europe/Amsterdam"

    days = await api.client.put(
        f"/api/departments/{dep}/policy", json={"default_validity_days": 10}, headers=desk
    )
    assert days.status_code == 204
    latest = (await api.events("DepartmentPolicySet"))[-1]
    assert (latest.payload["default_validity_days"], latest.payload["default_validity_months"]) == (
        10,
        None,
    )

    for body, rule in [
        ({"time_zone": "Europe/Atlantis"}, "InvalidPolicy"),
        ({"default_validity_days": 10, "default_validity_months": 1}, "InvalidPolicy"),
        ({"default_validity_months": 2, "max_validity_days": 40}, "DefaultValidityExceedsMaximum"),
    ]:
        refused = await api.client.put(f"/api/departments/{dep}/policy", json=body, headers=desk)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["rule"] == rule
    assert len(await api.events("DepartmentPolicySet")) == 3, "refusals store nothing"


async def test_patient_access_is_the_departments_policy(api):
    """Issue 16, point 2: patients reading the report, downloading, the reference numbers'
    validity and their automatic issue on arrival are set per department."""
    desk = await api.desk()
    dep = (await api.client.post("/api/departments", json={"name": "RX"}, headers=desk)).json()[
        "id"
    ]
    [created] = await api.events("DepartmentPolicySet")
    assert created.payload["reference_numbers_on_arrival"] is False
    assert created.payload["patient_report_access"] is None  # the deployment's default
    assert created.payload["reference_number_validity_days"] is None  # no date restriction
    changed = await api.client.put(
        f"/api/departments/{dep}/policy",
        json={
            "patient_report_access": "none",
            "patient_download_allowed": True,
            "reference_number_validity_days": 60,
            "reference_numbers_on_arrival": True,
        },
        headers=desk,
    )
    assert changed.status_code == 204, changed.text
    latest = (await api.events("DepartmentPolicySet"))[-1].payload
    assert (
        latest["patient_report_access"],
        latest["patient_download_allowed"],
        latest["reference_number_validity_days"],
        latest["reference_numbers_on_arrival"],
    ) == ("none", True, 60, True)
    view = (await api.client.get(f"/api/departments/{dep}", headers=desk)).json()["policy"]
    assert view["reference_numbers_on_arrival"] is True
    for body in (
        {"patient_report_access": "write"},
        {"reference_number_validity_days": 0},
        {"reference_numbers_on_arrival": "yes"},
    ):
        refused = await api.client.put(f"/api/departments/{dep}/policy", json=body, headers=desk)
        assert refused.status_code == 422, (body, refused.text)
    assert len(await api.events("DepartmentPolicySet")) == 2


async def test_a_department_admin_adds_only_users_of_no_department_or_of_their_own(api):
    """An admin once added anyone: a stranger of another department became 'administered'
    (their private e-mail and mobile shown to the admin, their sessions ended at each add and
    remove), and an admin registered active physicians of no department, skipping the desk's
    approval of self-registrations."""
    desk = await api.desk()

    async def department(name: str) -> str:
        made = await api.client.post("/api/departments", json={"name": name}, headers=desk)
        return made.json()["id"]

    ours, theirs = await department("RX"), await department("CARDIO")
    admin_id = await api.register(desk, username="rx.admin")
    await api.client.post(
        f"/api/departments/{ours}/admins", json={"user_id": admin_id}, headers=desk
    )
    stranger = await api.register(
        desk, username="cardio.doc", roles=["physician"], department_ids=[theirs]
    )
    free = await api.register(desk, username="free.doc", roles=["physician"])
    admin = await api.headers("rx.admin", "a-long-password-1")
    desk_id = (await api.client.get("/api/users/me", headers=desk)).json()["user_id"]
    for path in (f"/api/departments/{ours}/members", f"/api/departments/{ours}/admins"):
        for user_id in (stranger, desk_id):
            answer = await api.client.post(path, json={"user_id": user_id}, headers=admin)
            assert answer.status_code == 403 and answer.json()["rule"] == "NotAllowed", answer.text
    seen = (await api.client.get(f"/api/users/{stranger}", headers=admin)).json()
    assert seen.get("email") is None and seen.get("mobile") is None, "not administered"
    added = await api.client.post(
        f"/api/departments/{ours}/members", json={"user_id": free}, headers=admin
    )
    assert added.status_code == 204, added.text
    unattached = await api.client.post(
        "/api/users",
        json={
            "username": "ghost.doc",
            "password": "a-long-password-1",
            "first_name": "G",
            "last_name": "D",
            "roles": ["physician"],
            "department_ids": [],
        },
        headers=admin,
    )
    assert unattached.status_code == 403 and unattached.json()["rule"] == "NotAllowed"


async def test_a_department_names_every_admin_however_they_became_one(api):
    """An admin registered as one, or made one by the desk's roles, was missing from the
    department's admins, and removing them there answered 404 NotAMember; one who left the
    department stayed listed."""
    desk = await api.desk()
    made = await api.client.post("/api/departments", json={"name": "RX"}, headers=desk)
    dep = made.json()["id"]

    async def admins() -> list[str]:
        return (await api.client.get(f"/api/departments/{dep}", headers=desk)).json()["admin_ids"]

    registered = await api.register(desk, username="reg.admin", admin_of=[dep])
    assert await admins() == [registered]
    removed = await api.client.delete(f"/api/departments/{dep}/admins/{registered}", headers=desk)
    assert removed.status_code == 204, removed.text
    roled = await api.register(desk, username="roled.admin", roles=["department_staff"])
    changed = await api.client.put(
        f"/api/users/{roled}/roles",
        json={"roles": ["department_admin"], "department_ids": [dep], "admin_of": [dep]},
        headers=desk,
    )
    assert changed.status_code == 200, changed.text
    assert await admins() == [roled]
    left = await api.client.delete(f"/api/departments/{dep}/members/{roled}", headers=desk)
    assert left.status_code == 204, left.text
    assert await admins() == []
    unknown = await api.client.put(
        f"/api/users/{roled}/roles", json={"admin_of": ["dep_nowhere"]}, headers=desk
    )
    assert unknown.status_code == 404 and unknown.json()["rule"] == "DepartmentNotFound"
