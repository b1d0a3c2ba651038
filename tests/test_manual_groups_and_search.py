"""Issue 16, points 4, 5, 7 and 11 through the gateway: recipients found by field and picked
from the list, the login answer's due confirmations, a group's label seen by its members only,
a wrong composition mailed to the group's admins, and the environment offered before the
password without revealing existence. The lapse after the grace period needs a clock the
platform cannot be given: identity's `test_groups.py` and study-store's
`test_decisions_live.py` prove it."""

from __future__ import annotations

from studyshare.devstack.platform import LocalPlatform

from .storykit import Gateway, ok, problem, unique, wait_for


def test_recipients_by_field_and_from_the_list_and_a_wrong_composition_reaches_the_admins(
    api: Gateway, platform: LocalPlatform
) -> None:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    tag = unique("")
    number = f"1-{int(tag, 16) % 10**8:08d}"
    admin = api.register(
        desk,
        "Greta",
        roles=["physician"],
        last_name=f"Admin{tag}",
        physician_numbers=[{"registry": "RIZIV", "number": number}],
    )
    member = api.register(desk, "Hugo", roles=["physician"], last_name=f"Member{tag}")
    client = api.client

    def found(**params: str) -> list[str]:
        page = ok(client.get("/api/recipients", params=params, headers=member.headers))
        return [i["id"] for i in page["items"]]

    assert found(last_name=f"admin{tag}", first_name="gre") == [admin.user_id]
    assert found(physician_number=number, registry="riziv") == [admin.user_id]
    assert found(physician_number=number, registry="big") == []
    listed = ok(
        client.get(
            "/api/recipients",
            params={"browse": "true", "kind": "user", "page_size": 100},
            headers=member.headers,
        )
    )
    assert listed["total"] >= 2 and all(i["kind"] == "user" for i in listed["items"])
    problem(client.get("/api/recipients", headers=member.headers), 422, "SearchCriteriaMissing")

    group_id = ok(
        client.post(
            "/api/groups",
            json={
                "name": f"Praktijk {tag}",
                "primary_contact_id": admin.user_id,
                "member_ids": [member.user_id],
            },
            headers=desk,
        ),
        201,
    )["group_id"]
    answer = ok(
        client.post(
            "/api/auth/login", json={"username": member.username, "password": member.password}
        )
    )
    assert answer["group_confirmations_due"] == [], "just joined: confirmed for a period"

    # a group's label: its members pick it from their list, nobody else sees it
    def group_label() -> dict | bool:
        made = client.post(
            "/api/labels",
            json={"text": f"Praktijk {tag}", "group_id": group_id},
            headers=member.headers,
        )
        return made.status_code == 201 and made.json()

    assert wait_for(group_label, "the membership in share's directory")["scope"] == "group"
    picked = ok(client.get("/api/labels", headers=member.headers))
    assert [(x["text"], x["scope"]) for x in picked] == [(f"Praktijk {tag}", "group")]
    others = ok(client.get("/api/labels", headers=desk))  # the desk is no member
    assert f"Praktijk {tag}" not in [x["text"] for x in others]
    told = ok(
        client.post(
            f"/api/groups/{group_id}/report-composition",
            json={"remark": f"Dr Nys {tag} joined us"},
            headers=member.headers,
        ),
        202,
    )
    assert told["told"] == "group_admins"
    mail = api.mail_about(admin.email, f"Dr Nys {tag} joined us")
    assert f"Praktijk {tag}" in mail["subject"]


def test_the_environment_is_offered_before_the_password_revealing_nothing(
    api: Gateway, platform: LocalPlatform
) -> None:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    here = api.register(desk, "Ilse", roles=["physician"])
    dutch = unique("dr.nl.")
    body = {
        "username": dutch,
        "password": "Story-nl-Pass!-1234",
        "first_name": "Noor",
        "last_name": "Story",
        "environment": "nl",
    }
    ok(api.client.post("/api/users", json=body, headers=desk), 201)

    def ask(username: str):
        return api.client.post("/api/auth/environment", json={"username": username})

    known, unknown = ask(here.username), ask(unique("nobody."))
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content, "an unknown name answers as one of this environment"
    assert known.json()["current"] is True
    elsewhere = ask(dutch).json()
    assert (elsewhere["environment"], elsewhere["current"]) == ("nl", False)
