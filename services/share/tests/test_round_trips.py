"""A share costs few database round trips: the directory is read once, concurrently, and the
confirmation reuses what the command read (issue 9: share -> visible p99 <= 500 ms)."""

from __future__ import annotations

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """Counts the commands sent to one database while armed."""

    def __init__(self) -> None:
        self.database: str | None = None
        self.commands: list[str] = []
        self.finds: list[str] = []  # the collection of each `find`

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.database and event.database_name in (self.database, "admin"):
            self.commands.append(event.command_name)
            if event.command_name == "find":
                self.finds.append(str(event.command["find"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


COUNTER = CommandCounter()
monitoring.register(COUNTER)  # applies to the clients created after import, the app's included


async def test_a_share_reads_the_directory_once_and_writes_in_one_transaction(env):
    COUNTER.database, COUNTER.finds = env.db.name, []
    try:
        await env.share()  # the sender's preferences are remembered by the first share
    finally:
        COUNTER.database = None
    assert COUNTER.finds.count("events") == 1, COUNTER.finds  # read once, not again to write
    await env.service.directory.pointer.current()  # the generation pointer is cached
    COUNTER.database, COUNTER.commands = env.db.name, []
    try:
        shared = await env.share(
            recipients=[{"kind": "user", "id": "usr_r1"}, {"kind": "group", "id": "grp_1"}]
        )
    finally:
        COUNTER.database = None
    # studies, users, groups, departments, preferences; event + view inserts; commit
    assert sorted(COUNTER.commands) == sorted(
        ["find"] * 5 + ["insert", "insert", "commitTransaction"]
    ), COUNTER.commands
    confirmation = shared["confirmation"]
    assert confirmation["sender"] == {"id": "usr_sender", "name": "Dr Sender"}
    assert [r["name"] for r in confirmation["recipients"]] == ["Dr R1", "Group practice Zuid"]
    assert confirmation["studies"][0]["description"] == "CT thorax"


def test_policy_of_a_department_without_one_is_the_documented_default():
    from studyshare.share.adapters.readmodel import policy_of

    policy, country = policy_of({"_id": "dep_x", "country": "us"})
    # neither days nor months: one calendar month (decide_validity), unlimited allowed
    assert (policy.default_validity_days, policy.default_validity_months) == (None, None)
    assert policy.unlimited_allowed and policy.time_zone == "UTC"
    assert policy.hipaa_confirmation_required and country == "us"
    assert policy_of(None)[0].hipaa_confirmation_required is False
    belgian, _ = policy_of({"_id": "dep_b", "country": "be"})
    assert belgian.time_zone == "Europe/Brussels"
    # a policy set before months existed keeps its days; a newer one its months and zone
    old = {"country": "be", "policy": {"default_validity_days": 30}}
    assert (policy_of(old)[0].default_validity_days, policy_of(old)[0].default_validity_months) == (
        30,
        None,
    )
    new = {
        "country": "be",
        "policy": {
            "default_validity_days": 60,
            "default_validity_months": 2,
            "time_zone": "America/New_York",
        },
    }
    assert policy_of(new)[0].default_validity_days is None
    assert policy_of(new)[0].default_validity_months == 2
    assert policy_of(new)[0].time_zone == "America/New_York"


def test_buckets_held_directly_and_through_a_group_merge_newest_first_once():
    from datetime import UTC, datetime

    from studyshare.share.service_layer.views import newest_first

    day = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    direct = [{"_id": "b3", "shared_at": day[2]}, {"_id": "b1", "shared_at": day[0]}]
    via_group = [{"_id": "b2", "shared_at": day[1]}, {"_id": "b1", "shared_at": day[0]}]
    merged = newest_first(direct + via_group + [{"_id": "b0", "shared_at": None}])
    assert [d["_id"] for d in merged] == ["b3", "b2", "b1", "b0"]


async def test_the_unread_filter_reads_the_read_marks_once(env):
    """Filtering on unread reads the read marks of every entry; the page reuses them."""
    await env.share()
    for unread, marks in ((None, 1), (True, 1), (False, 1)):
        params = {} if unread is None else {"unread": str(unread).lower()}
        COUNTER.database, COUNTER.finds = env.db.name, []
        try:
            response = await env.client.get(
                "/api/shared-with-me", params=params, headers=env.as_("usr_r1")
            )
        finally:
            COUNTER.database = None
        assert response.status_code == 200, response.text
        opened = [f for f in COUNTER.finds if f.endswith(".opened")]
        assert len(opened) == marks, (unread, COUNTER.finds)
        assert response.json()["total"] == (0 if unread is False else 1)
