"""Concurrent senders, OTP attempts and revocations at once: no 5xx, nothing lost, the lock
still holds at exactly five wrong codes."""

from __future__ import annotations

import asyncio
from collections import Counter

from .conftest import share_body


async def test_concurrent_shares_otp_attempts_and_revocations(env):
    locked = (await env.share(two_factor=True))["bucket_id"]
    await env.client.post(f"/api/shares/{locked}/otp", headers=env.as_("usr_r1"))
    to_revoke = [(await env.share())["bucket_id"] for _ in range(10)]

    async def share(i: int) -> int:
        sender = "usr_staff2" if i % 2 else "usr_sender"
        response = await env.client.post("/api/shares", json=share_body(), headers=env.as_(sender))
        return response.status_code

    async def wrong_code() -> int:
        response = await env.client.post(
            f"/api/shares/{locked}/otp/verify", json={"code": "wrong"}, headers=env.as_("usr_r1")
        )
        return response.status_code

    async def revoke(bucket_id: str) -> int:
        response = await env.client.delete(
            f"/api/shares/{bucket_id}", headers=env.as_("usr_sender")
        )
        return response.status_code

    results = await asyncio.gather(
        *(share(i) for i in range(30)),
        *(wrong_code() for _ in range(20)),
        *(revoke(b) for b in to_revoke),
    )
    assert Counter(results[:30]) == {201: 30}
    assert Counter(results[30:50]) == {401: 4, 423: 16}
    assert Counter(results[50:]) == {200: 10}
    assert await env.count(event_type="StudyShared") == 41
    assert await env.db.buckets_view.count_documents({}) == 41
    assert await env.count(aggregate_id=locked, event_type="OTPFailed") == 5
    assert await env.db.buckets_view.count_documents({"status": "revoked"}) == 10
    items = (
        await env.client.get(
            "/api/shared-with-me", params={"limit": 200}, headers=env.as_("usr_r1")
        )
    ).json()
    assert items["total"] == 31  # 30 new + the locked two-factor bucket; revoked ones are gone
