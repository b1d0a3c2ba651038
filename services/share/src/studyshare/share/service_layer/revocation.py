"""Revocation: a bucket revoked by its sender or an administrator, the re-shares made from it
ending with it (the cascade), re-shares no longer held after a membership change, and the
expiry of buckets whose time is up."""

from __future__ import annotations

import asyncio
from datetime import datetime

from studyshare.contracts.envelope import Actor
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.logging import get_logger
from studyshare.share.domain import exceptions
from studyshare.share.domain.model import Bucket, holds_bucket
from studyshare.share.service_layer.base import ShareBase, actor_of

log = get_logger(__name__)


CASCADE_ACTOR = "system:share-cascade"


class Revocation(ShareBase):
    """Ending access."""

    async def revoke(
        self,
        principal: AccessClaims,
        bucket_id: str,
        scope: str,
        *,
        recipient_id: str | None = None,
        study_uid: str | None = None,
    ) -> Bucket:
        bucket = await self._load(bucket_id)
        if not await self._may_revoke(principal, bucket, study_uid):
            raise exceptions.NotAllowedToRevoke(
                "only the sender, the study owner or an admin of the sending department may revoke"
            )
        bucket, _ = await self.buckets.execute(
            bucket_id,
            lambda b: b.revoke(
                scope, principal.sub, recipient_id=recipient_id, study_uid=study_uid
            ),
            actor_of(principal),
        )
        ended = await self._cascade(principal.sub, actor_of(principal), bucket_id, scope, study_uid)
        await self._propagate([bucket_id, *ended])
        return bucket

    async def holder_keys_of(self, user_id: str, *, left: str | None = None) -> set[str]:
        """The ids through which a user holds buckets now, from the directory (not a token):
        themselves, their groups, their departments; `left` is one they just left."""
        user, groups = await asyncio.gather(
            self.directory.user(user_id), self.directory.groups_of(user_id)
        )
        user = user or {}
        keys = {user_id, *groups, *user.get("department_ids", ()), *user.get("admin_of", ())}
        return keys - {left} if left else keys

    async def _cascade(
        self,
        by: str,
        actor: Actor,
        parent_id: str,
        scope: str,
        study_uid: str | None,
    ) -> list[str]:
        """Everything re-shared from what was revoked is revoked too, down the chain: a whole
        bucket or a study ends its re-shares; a revoked recipient (a user, a group, a
        department) ends the re-shares of every sender who no longer holds the bucket.
        Returns the re-shares it revoked."""
        ended: list[str] = []
        parent = await self.readmodel.get(parent_id) if scope == "recipient" else None
        for child in await self.readmodel.children(parent_id):
            if child["revoked"]:
                continue
            child_scope, child_study = "bucket", None
            if scope == "study":
                if study_uid not in child["active_study_uids"]:
                    continue
                child_scope, child_study = "study", study_uid
            elif scope == "recipient" and parent is not None:
                keys = await self.holder_keys_of(child["sender_id"])
                if holds_bucket(parent["active_recipient_ids"], keys):
                    continue
            ended += await self._revoke_child(
                by, actor, parent_id, child["_id"], child_scope, child_study
            )
        return ended

    async def _revoke_child(
        self,
        by: str,
        actor: Actor,
        parent_id: str,
        child_id: str,
        scope: str,
        study_uid: str | None,
    ) -> list[str]:
        """Revoke one re-share and what was re-shared from it; the buckets revoked."""
        await self.buckets.execute(
            child_id,
            lambda b: (
                []
                if b.revoked
                else b.revoke(scope, by, study_uid=study_uid, cascade_from=parent_id)
            ),
            actor,
        )
        return [child_id, *await self._cascade(by, actor, child_id, scope, study_uid)]

    async def end_reshares_no_longer_held(
        self, user_id: str, keys: set[str], by: str, left_at: datetime
    ) -> list[str]:
        """A user left a department or group at `left_at`: every re-share they sent before from
        a bucket they no longer hold (through `keys`, what they are in now) ends, with what was
        re-shared from it. Idempotent: an ended re-share is skipped."""
        ended: list[str] = []
        actor = Actor.system(CASCADE_ACTOR)
        for child in await self.readmodel.reshares_sent_by(user_id, before=left_at):
            parent = await self.readmodel.get(child["parent_bucket_id"])
            if parent is None or parent["revoked"]:
                continue
            if holds_bucket(parent["active_recipient_ids"], keys):
                continue
            await self._revoke_child(by, actor, parent["_id"], child["_id"], "bucket", None)
            ended.append(child["_id"])
        if ended:
            log.info("reshares.ended_with_membership", user_id=user_id, buckets=len(ended))
        return ended

    async def expire_due(self, now: datetime | None = None) -> list[str]:
        """Append `BucketExpired` once per bucket past `valid_until`."""
        now = now or self.clock()
        expired = []
        for bucket_id in await self.readmodel.due_for_expiry(now):
            _, envelopes = await self.buckets.execute(
                bucket_id, lambda b: b.expire(now), Actor(id="system:share-expiry")
            )
            if envelopes:
                expired.append(bucket_id)
        if expired:
            log.info("buckets.expired", count=len(expired))
        return expired
