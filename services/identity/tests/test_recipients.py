"""Issue point 4: recipient search by first name, last name, physician number, and mobile /
email only where public; users, groups, departments and PACS; ranked, paginated, indexed."""

from __future__ import annotations

from studyshare.identity.domain.search import query_tokens, user_terms
from studyshare.identity.service_layer.recipients import candidate_filter


async def populate(api) -> dict[str, str]:
    desk = await api.desk()
    ids = {
        "an": await api.register(
            desk,
            username="an.janssens",
            first_name="Ann",
            last_name="Janssens",
            email="ann@private.be",
            email_public=False,
            mobile="+32 475 11 22 33",
            mobile_public=True,
            physician_numbers=[{"registry": "RIZIV", "number": "1-11111-22-333"}],
        ),
        "jan": await api.register(
            desk,
            username="jan.peeters",
            first_name="Jan",
            last_name="Peeters",
            email="jan.peeters@public.be",
            email_public=True,
            mobile="+32 470 99 88 77",
            mobile_public=False,
            physician_numbers=[{"registry": "BIG", "number": "19012345601"}],
        ),
        "jans": await api.register(
            desk, username="janssen", first_name="Émile", last_name="Jansen-Dubois"
        ),
    }
    group = await api.client.post(
        "/api/groups",
        json={"name": "Groepspraktijk Jansen", "primary_contact_id": ids["jan"]},
        headers=desk,
    )
    ids["group"] = group.json()["id"]
    rad = await api.client.post(
        "/api/departments", json={"name": "Radiologie Jan Palfijn"}, headers=desk
    )
    ids["rad"] = rad.json()["id"]
    pacs = await api.client.post(
        "/api/departments",
        json={
            "name": "Jan Yperman PACS",
            "kind": "pacs",
            "pacs": {"ae_title": "YPERMAN", "host": "10.0.0.5", "port": 104},
        },
        headers=desk,
    )
    ids["pacs"] = pacs.json()["id"]
    return ids


async def find(api, headers, q, **params):
    response = await api.client.get("/api/recipients", params={"q": q, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_search_by_names_numbers_and_public_contact_data_only(api):
    ids = await populate(api)
    me = await api.headers("jan.peeters", "a-long-password-1")
    ids_of = lambda page: [i["id"] for i in page["items"]]  # noqa: E731
    assert ids_of(await find(api, me, "ann")) == [ids["an"]]
    assert ids_of(await find(api, me, "peeters")) == [ids["jan"]]
    assert ids_of(await find(api, me, "emile")) == [ids["jans"]], "accents are folded"
    assert ids_of(await find(api, me, "dubois")) == [ids["jans"]]
    assert ids_of(await find(api, me, "11111")) == [ids["an"]], "physician number prefix"
    assert ids_of(await find(api, me, "1-11111-22-333")) == [ids["an"]]
    assert ids_of(await find(api, me, "+32 475 11")) == [ids["an"]], "public mobile"
    assert ids_of(await find(api, me, "0475 112")) == [ids["an"]], "national form"
    assert ids_of(await find(api, me, "0032 475")) == [ids["an"]]
    assert ids_of(await find(api, me, "0470 99")) == [], "a private mobile is not searchable"
    assert ids_of(await find(api, me, "32470998877")) == []
    assert ids_of(await find(api, me, "jan.peeters@public")) == [ids["jan"]], "public email"
    assert ids_of(await find(api, me, "ann@private.be")) == [], "a private email is not searchable"
    assert ids_of(await find(api, me, "ann janssens")) == [ids["an"]], "every word must match"


async def test_results_mix_users_groups_departments_and_pacs_and_exact_matches_rank_first(api):
    ids = await populate(api)
    me = await api.headers("jan.peeters", "a-long-password-1")
    page = await find(api, me, "jan")
    kinds = {i["id"]: (i["kind"], i["department_kind"], i["match"]) for i in page["items"]}
    assert kinds[ids["group"]][0] == "group"
    assert kinds[ids["rad"]] == ("department", "radiology", "exact")
    assert kinds[ids["pacs"]] == ("department", "pacs", "exact")
    assert kinds[ids["an"]] == ("user", None, "prefix"), "Janssens only starts with jan"
    matches = [i["match"] for i in page["items"]]
    assert matches == sorted(matches), "exact matches come before prefix matches"
    assert page["total"] == len(page["items"]) == 6
    only_pacs = await find(api, me, "jan", kind="pacs")
    assert [i["id"] for i in only_pacs["items"]] == [ids["pacs"]]
    assert [i["id"] for i in (await find(api, me, "yperman", kind="pacs"))["items"]] == [
        ids["pacs"]
    ]
    groups = await find(api, me, "jan", kind="group")
    assert [i["id"] for i in groups["items"]] == [ids["group"]]


async def test_pagination_walks_the_ranked_list_without_gaps_or_repeats(api):
    await populate(api)
    me = await api.headers("jan.peeters", "a-long-password-1")
    full = await find(api, me, "jan", page_size=100)
    walked = []
    for page in (1, 2, 3, 4):
        chunk = await find(api, me, "jan", page=page, page_size=2)
        assert chunk["total"] == full["total"]
        walked += chunk["items"]
    assert walked == full["items"]
    unauth = await api.client.get("/api/recipients", params={"q": "jan"})
    assert unauth.status_code == 401
    bad = await api.client.get(
        "/api/recipients", params={"q": "jan", "page_size": 1000}, headers=me
    )
    assert bad.status_code == 422


async def test_deactivated_and_pending_users_are_not_recipients(api):
    ids = await populate(api)
    desk = await api.desk()
    await api.client.post(f"/api/users/{ids['an']}/deactivate", headers=desk)
    await api.client.post(
        "/api/users/register",
        json={
            "username": "annie",
            "password": "a-long-password-1",
            "first_name": "Annie",
            "last_name": "Pending",
        },
    )
    me = await api.headers("jan.peeters", "a-long-password-1")
    assert (await find(api, me, "ann"))["items"] == []
    assert (await api.login("an.janssens", "a-long-password-1")).status_code == 403


async def test_every_search_query_is_an_index_scan_never_a_collection_scan(api):
    await populate(api)
    recipients = api.identity.db.recipients
    for q, kind in [("jan", None), ("jan peeters", "user"), ("+32 475", None), ("x", "pacs")]:
        plan = await recipients.find(candidate_filter(q, kind), {"terms": 1}).explain()
        text = str(plan["queryPlanner"]["winningPlan"])
        assert "IXSCAN" in text and "COLLSCAN" not in text, (q, kind, plan)
        assert "terms_kind" in text
    by_id = await recipients.find({"_id": {"$in": ["a", "b"]}}).explain()
    assert "COLLSCAN" not in str(by_id["queryPlanner"]["winningPlan"])


def test_terms_hold_prefixes_and_exact_markers_and_skip_private_contact_data():
    terms = user_terms(
        first_name="Jan",
        last_name="Van den Broeck",
        physician_numbers=["1-234"],
        email="j@x.be",
        email_public=False,
        mobile="+32 475 12",
        mobile_public=True,
    )
    assert {
        "j",
        "ja",
        "jan",
        "=jan",
        "broeck",
        "=vandenbroeck",
        "1234",
        "=1234",
        "324",
        "04",
    } <= set(terms)
    assert not any("@" in t for t in terms)
    assert query_tokens("  Jan  VAN  ") == ["jan", "van"]


async def test_detailed_search_by_field_and_select_from_list(api):
    """Issue 16, point 4 (manuals I2 "select from list", U5 detailed search by field)."""
    ids = await populate(api)
    me = await api.headers("jan.peeters", "a-long-password-1")

    async def by(**params):
        response = await api.client.get("/api/recipients", params=params, headers=me)
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    # a field matches only that field: "Jan" is a first name of one user, a word of others' names
    assert await by(first_name="jan") == [ids["jan"]]
    assert await by(last_name="jans") == [ids["jans"], ids["an"]], "by name: Jansen, Janssens"
    assert await by(last_name="janssens", first_name="ann") == [ids["an"]]
    assert await by(last_name="janssens", first_name="jan") == [], "all fields together"
    assert await by(physician_number="1-11111") == [ids["an"]]
    assert await by(registry="big") == [ids["jan"]]
    assert await by(registry="riziv", physician_number="19012345601") == []
    assert await by(email="jan.peeters@public") == [ids["jan"]]
    assert await by(email="ann@private.be") == [], "a private e-mail is not searchable"
    assert await by(mobile="0475 11") == [ids["an"]]
    assert await by(mobile="+32 470 99") == [], "a private mobile is not searchable"
    assert await by(name="yperman", kind="department") == [ids["pacs"]]
    assert await by(name="jans", kind="group") == [ids["group"]], "a prefix of a word"
    assert await by(name="praktijk", kind="group") == [], "not the middle of a word"
    assert await by(first_name="ann", kind="group") == [], "the kind narrows"

    # select from list: every recipient of a kind by name, a page at a time
    first = await api.client.get(
        "/api/recipients", params={"browse": "true", "kind": "user", "page_size": 2}, headers=me
    )
    assert first.status_code == 200, first.text
    page1 = first.json()
    users = [
        i["_id"]
        async for i in api.identity.db["recipients"]
        .find({"kind_key": "user"})
        .sort([("sort_name", 1), ("_id", 1)])
    ]
    assert page1["total"] == len(users) >= 3
    assert [i["id"] for i in page1["items"]] == users[:2]
    assert all(i["match"] is None for i in page1["items"])
    page2 = (
        await api.client.get(
            "/api/recipients",
            params={"browse": "true", "kind": "user", "page_size": 2, "page": 2},
            headers=me,
        )
    ).json()
    assert [i["id"] for i in page2["items"]] == users[2:4]
    everything = (
        await api.client.get(
            "/api/recipients", params={"browse": "true", "page_size": 100}, headers=me
        )
    ).json()
    assert {ids["group"], ids["rad"], ids["pacs"], ids["an"]} <= {
        i["id"] for i in everything["items"]
    }

    refused = await api.client.get("/api/recipients", headers=me)
    assert refused.status_code == 422
    assert refused.json()["rule"] == "SearchCriteriaMissing"
