"""Issue 15, point 10: study logging. A QIDO-RS search and a `GET /api/studies` list register
an access for every study they return; a refused access is an entry of the study logging too
(`StudyAccessRefused`, with the rule that refused it). That an access is stored before its
answer leaves (none lost on kill -9) is study-store's `tests/test_access_log_durability.py`.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, by_actor, ok, unique


@pytest.fixture(scope="module")
def cast(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department_id = api.radiology_department(desk, unique("Radiology logging "))
    admin = api.register(
        desk,
        "Lotte",
        roles=["department_admin", "department_staff"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    physician = api.register(
        admin.headers, "Lucas", roles=["physician"], department_ids=[department_id]
    )
    stranger = api.register(desk, "Sam", roles=["physician"])
    studies = [
        api.upload(physician, f"CT logging {i}", "Logging^Lena", "19750505").study_uid
        for i in range(2)
    ]
    return SimpleNamespace(admin=admin, physician=physician, stranger=stranger, studies=studies)


def test_a_qido_search_is_logged_for_every_study_it_returns(api: Gateway, cast: SimpleNamespace):
    found = ok(
        api.client.get(
            "/dicomweb/studies",
            params={"StudyInstanceUID": ",".join(cast.studies)},
            headers=cast.physician.headers,
        )
    )
    returned = {s["0020000D"]["Value"][0] for s in found}
    assert returned == set(cast.studies)
    for uid in cast.studies:
        api.logged(
            cast.admin, uid, [("StudyAccessed", by_actor(cast.physician.user_id, action="search"))]
        )


def test_a_study_list_is_logged_for_every_study_on_the_page(api: Gateway, cast: SimpleNamespace):
    page = ok(api.client.get("/api/studies", params={"limit": 200}, headers=cast.physician.headers))
    listed = {s["study_uid"] for s in page["items"]}
    assert set(cast.studies) <= listed
    for uid in cast.studies:
        api.logged(
            cast.admin, uid, [("StudyAccessed", by_actor(cast.physician.user_id, action="list"))]
        )


def test_refused_accesses_are_entries_of_the_study_logging(api: Gateway, cast: SimpleNamespace):
    uid = cast.studies[0]
    refused = [
        api.client.get(f"/api/studies/{uid}", headers=cast.stranger.headers),
        api.client.get(f"/dicomweb/studies/{uid}/metadata", headers=cast.stranger.headers),
        api.client.get(f"/api/studies/{uid}/report", headers=cast.stranger.headers),
    ]
    # the stranger has no way in: answered as for a study never received ...
    assert {(r.status_code, r.json()["rule"]) for r in refused} == {(404, "StudyNotFound")}, [
        r.text for r in refused
    ]
    # ... while the study logging keeps why they were refused
    view = metadata = report = "NoAccessToStudy"
    entries = api.logged(
        cast.admin,
        uid,
        [
            ("StudyAccessRefused", by_actor(cast.stranger.user_id, action="view", rule=view)),
            (
                "StudyAccessRefused",
                by_actor(cast.stranger.user_id, action="metadata", rule=metadata),
            ),
            (
                "StudyAccessRefused",
                by_actor(cast.stranger.user_id, action="report_read", rule=report),
            ),
        ],
    )
    mine = [e for e in entries if cast.stranger.user_id in e["actors"]]
    assert {e["event_type"] for e in mine} == {"StudyAccessRefused"}, mine
