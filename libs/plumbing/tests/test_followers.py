"""Leases, the barrier's rule for who is behind, and the barrier against the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from studyshare.plumbing.followers import (
    JOINING,
    FollowerRegistry,
    Lease,
    Seen,
    behind,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def follower(fid: str, position: int, *, beats: int = 1, generation: int = 0, beat_at=None):
    return {
        "_id": fid,
        "position": position,
        "generation": generation,
        "beats": beats,
        "lease_s": 5.0,
        "heartbeat_at": beat_at or datetime.fromtimestamp(1_000_000, UTC),
    }


WALL = 1_000_000.5  # half a second after the beats above


def test_a_lease_holds_from_the_start_of_the_beat_that_renewed_it():
    clock = Clock()
    lease = Lease(5.0, clock)
    assert not lease.fresh, "never renewed: answers nothing"
    lease.renew(clock.now - 1)  # the beat started a second ago and was stored just now
    assert lease.fresh and lease.age_s == 1
    clock.now += 3.9
    assert lease.fresh
    clock.now += 0.2
    assert not lease.fresh, "4.1 s after the beat started, no later one: lapsed"
    lease.renew(clock.now - 10)
    assert not lease.fresh, "an older beat never extends the lease"
    lease.renew(clock.now)
    assert lease.fresh
    lease.lapse()
    assert not lease.fresh


def test_followers_at_the_target_are_not_waited_for():
    seen: dict[str, Seen] = {}
    docs = [follower("a", 7), follower("b", 9), follower("c", 6)]
    assert behind(docs, 7, 0, seen, now=0, wall_now=WALL, clock_skew_s=1) == ["c"]


def test_another_generation_or_a_joining_follower_is_behind():
    seen: dict[str, Seen] = {}
    docs = [follower("old", 99, generation=0), follower("new", JOINING, generation=-1)]
    assert behind(docs, 5, 1, seen, now=0, wall_now=WALL, clock_skew_s=1) == ["old", "new"]


def test_a_silent_follower_is_waited_for_its_lease_then_taken_as_gone():
    seen: dict[str, Seen] = {}
    docs = [follower("dead", 3, beats=41)]
    for now in (10.0, 12.0, 15.0):
        assert behind(docs, 5, 0, seen, now=now, wall_now=WALL, clock_skew_s=1) == ["dead"]
    assert behind(docs, 5, 0, seen, now=15.01, wall_now=WALL, clock_skew_s=1) == []


def test_a_follower_that_beats_but_lags_is_waited_for_until_it_catches_up():
    seen: dict[str, Seen] = {}
    for step in range(10):
        docs = [follower("slow", 3, beats=step)]
        now = 10.0 + step * 4  # more than a lease in all, but it beats every 4 s
        assert behind(docs, 5, 0, seen, now=now, wall_now=WALL, clock_skew_s=1) == ["slow"]
    assert (
        behind([follower("slow", 5, beats=11)], 5, 0, seen, now=60, wall_now=WALL, clock_skew_s=1)
        == []
    )


def test_a_follower_gone_long_ago_by_the_wall_clock_is_not_waited_for():
    seen: dict[str, Seen] = {}
    old = datetime.fromtimestamp(WALL - 6.1, UTC)  # lease 5 s + skew 1 s ago
    recent = datetime.fromtimestamp(WALL - 5.9, UTC)
    docs = [follower("gone", 1, beat_at=old), follower("recent", 1, beat_at=recent)]
    assert behind(docs, 5, 0, seen, now=0, wall_now=WALL, clock_skew_s=1) == ["recent"]


async def test_the_barrier_waits_for_every_live_follower(mongo_db):
    registry = FollowerRegistry(mongo_db["followers"], poll_s=0.01)
    await registry.beat("a", 1, lease_s=5)
    await registry.beat("b", 1, lease_s=5)

    async def catch_up() -> None:
        await asyncio.sleep(0.1)
        await registry.beat("a", 2, lease_s=5)
        await asyncio.sleep(0.1)
        await registry.beat("b", 3, lease_s=5)

    task = asyncio.create_task(catch_up())
    outcome = await registry.wait_for(2, timeout_s=5)
    await task
    assert outcome.confirmed and outcome.followers == 2
    assert 0.15 < outcome.waited_s < 2


async def test_the_barrier_gives_up_at_its_timeout_and_names_who_is_behind(mongo_db):
    registry = FollowerRegistry(mongo_db["followers"], poll_s=0.01)
    await registry.beat("stuck", 1, lease_s=30)
    outcome = await registry.wait_for(2, timeout_s=0.2)
    assert not outcome.confirmed and outcome.behind == ["stuck"]


async def test_a_follower_that_left_or_never_beat_is_not_waited_for(mongo_db):
    registry = FollowerRegistry(mongo_db["followers"], poll_s=0.01)
    await registry.beat("leaving", 1, lease_s=30)
    await registry.leave("leaving")
    assert (await registry.wait_for(2, timeout_s=0.2)).confirmed


async def test_a_follower_that_died_is_waited_out_by_its_lease(mongo_db):
    registry = FollowerRegistry(mongo_db["followers"], poll_s=0.01)
    await registry.beat("died", 1, lease_s=0.3)
    outcome = await registry.wait_for(2, timeout_s=5)
    assert outcome.confirmed and 0.3 <= outcome.waited_s < 1.5


async def test_forget_gone_removes_only_followers_silent_for_long(mongo_db):
    wall = Clock(1_000_000.0)
    registry = FollowerRegistry(mongo_db["followers"], wall=wall)
    await registry.beat("old", 1, lease_s=5)
    wall.now += 100
    await registry.beat("new", 1, lease_s=5)
    assert await registry.forget_gone(older_than_s=50) == 1
    assert [f["_id"] for f in await registry.followers()] == ["new"]


@pytest.mark.parametrize("position", [0, 5])
def test_behind_is_empty_without_followers(position: int):
    assert behind([], position, 0, {}, now=0, wall_now=WALL, clock_skew_s=1) == []
