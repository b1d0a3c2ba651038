"""Integration tests (real database, real app): the Access tab for the exam owner, the sending
department's staff and the senders (issue 16, point 3), and a patient's "who opened my study"
(point 14)."""

from __future__ import annotations

import httpx
import pytest

from studyshare.audit.entrypoints.api import create_app
from studyshare.audit.service_layer.rebuild import rebuild_from_envelopes
from studyshare.contracts.events import identity

from .scenario import full_story


@pytest.fixture
async def named(mongo_db, real_infra, test_tokens, monkeypatch):
    """The full story, with the owner, alice and the sending department named by identity."""
    story, ids = full_story()
    for user, first, last in ((ids["owner"], "Olga", "Owner"), (ids["alice"], "Alice", "Ames")):
        story.add(
            identity.UserRegistered(
                user_id=user,
                username=f"{first}{story.tag}",
                first_name=first,
                last_name=last,
                department_ids=(ids["dep"],) if user == ids["alice"] else (),
            ),
            user,
            "usr_admin",
        )
    story.add(
        identity.DepartmentCreated(
            department_id=ids["dep"], name="Radiology Sint-Jan", created_by="usr_root"
        ),
        ids["dep"],
        "usr_root",
    )
    await rebuild_from_envelopes(mongo_db, story.events, batch_size=7, switch=True)
    monkeypatch.setenv("STUDYSHARE_MONGO_URL", real_infra.mongo_url)
    monkeypatch.setenv("STUDYSHARE_KAFKA_BOOTSTRAP", real_infra.kafka_bootstrap)
    monkeypatch.setenv("STUDYSHARE_DATABASE", mongo_db.name)
    monkeypatch.setenv("STUDYSHARE_ENVIRONMENT", "test")
    app = create_app()
    async with app.router.lifespan_context(app):
        test_tokens.install(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://audit"
        ) as client:
            yield client, ids


async def reads_of(client, test_tokens, uid: str) -> list[dict]:
    """The recorded reads of the study's log (but the auditor's read of them)."""
    r = await client.get(
        "/api/audit/reads", params={"study_uid": uid}, headers=test_tokens.user("a", "auditor")
    )
    return [x for x in r.json()["items"] if x["payload"]["route"] != "/api/audit/reads"]


async def test_owner_department_staff_and_sender_see_the_access_tab_under_the_exam_owner(
    named, test_tokens
):
    client, ids = named
    url = f"/api/audit/studies/{ids['uid']}/access"
    owner = (await client.get(url, headers=test_tokens.user(ids["owner"], "physician"))).json()
    assert owner["view"] == "owner"
    assert owner["exam_owner"] == {"user_id": ids["owner"], "name": "Olga Owner"}
    assert {ids["sender"], ids["owner"]} == {g["granted_by"] for g in owner["users"]}
    assert {b["bucket_id"] for b in owner["buckets"]} == {ids["bucket"], ids["bucket2"]}
    assert owner["break_the_glass"] and owner["reference_numbers"] == []

    staff = test_tokens.user("usr_staff", "department_staff", department_ids=[ids["dep"]])
    r = await client.get(url, headers=staff)
    assert r.status_code == 200 and r.json()["view"] == "department"
    assert len(r.json()["users"]) == len(owner["users"])

    sender = (await client.get(url, headers=test_tokens.user(ids["sender"], "physician"))).json()
    assert sender["view"] == "sender" and sender["exam_owner"]["name"] == "Olga Owner"
    assert [b["bucket_id"] for b in sender["buckets"]] == [ids["bucket"]]
    assert {g["granted_by"] for g in sender["users"] + sender["groups"]} == {ids["sender"]}
    assert sender["break_the_glass"] == sender["downloads"] == sender["reference_numbers"] == []

    admin = test_tokens.user("m", "department_admin", admin_of=[ids["dep"]])
    full = (await client.get(url, headers=admin)).json()
    assert full["view"] == "full" and full["reference_numbers"]

    views = [
        r["payload"]["query"].get("view") for r in await reads_of(client, test_tokens, ids["uid"])
    ]
    assert views == ["owner", "department", "sender", "full"], "each read is in the log"


async def test_a_recipient_who_did_not_share_and_another_department_are_refused(named, test_tokens):
    client, ids = named
    url = f"/api/audit/studies/{ids['uid']}/access"
    for reader in (
        test_tokens.user(ids["alice"], "physician"),  # a recipient, not a sender
        test_tokens.user(ids["carol"], "physician"),  # a recipient of the owner's bucket
        test_tokens.user("usr_x", "department_staff", department_ids=[ids["other_dep"]]),
        test_tokens.user("usr_x", "physician"),
    ):
        r = await client.get(url, headers=reader)
        assert r.status_code == 403 and r.json()["rule"] == "NotAmongThoseWhoShare", r.text
    # a study not in the log is refused alike (no oracle of which studies exist)
    r = await client.get(
        "/api/audit/studies/9.9.9/access", headers=test_tokens.user("x", "physician")
    )
    assert r.status_code == 403 and r.json()["rule"] == "NotAmongThoseWhoShare"
    assert await reads_of(client, test_tokens, ids["uid"]) == [], "a refused read changes nothing"


async def test_a_patient_sees_who_opened_their_study_and_nothing_of_another(named, test_tokens):
    client, ids = named
    patient = test_tokens.patient(ids["ref_id"], ids["uid"])
    r = await client.get("/api/audit/my-study/openings", headers=patient)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["study_uid"] == ids["uid"]
    rows = [(o["kind"], o["user_name"], o["department_names"]) for o in body["items"]]
    assert ("view", "Alice Ames", ["Radiology Sint-Jan"]) in rows
    assert ("report_read", "Alice Ames", ["Radiology Sint-Jan"]) in rows
    assert ("download", "Olga Owner", []) in rows
    glass = ("break_the_glass", "G L", [f"Radiology {ids['other_dep']}"])
    assert glass in rows, "the scenario's emergency physician and their department, named"
    assert "emergency" not in r.text and ids["ref"] not in r.text, "no reason, no number"
    assert ids["ref_id"] not in r.text, "nor the number's id"
    reads = await reads_of(client, test_tokens, ids["uid"])
    assert [x["payload"]["route"] for x in reads] == ["/api/audit/my-study/openings"]

    other = test_tokens.patient("ROTHER", "1.2.999.1")
    r = await client.get("/api/audit/my-study/openings", headers=other)
    assert r.status_code == 200 and r.json()["items"] == [] and ids["uid"] not in r.text
    for refused in (test_tokens.user(ids["owner"], "physician"), test_tokens.user("a", "auditor")):
        r = await client.get("/api/audit/my-study/openings", headers=refused)
        assert r.status_code == 403 and r.json()["rule"] == "PatientTokenOnly"
