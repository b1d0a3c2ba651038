"""Reactions of the share worker: events of other services that run share commands."""

from __future__ import annotations

from collections.abc import Sequence

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry
from studyshare.plumbing.projection import Projection, ProjectionContext
from studyshare.share.settings import ShareSettings


class MembershipCascade(Projection):
    """A user who left a department or a group no longer holds the buckets shared with it: the
    re-shares they sent from those end (`AccessRevoked` with `cascade_from`), and what was
    re-shared from them. The study store already refuses them at decision time; this records
    the end in the buckets themselves. A reaction, idempotent per bucket."""

    name = "membership_cascade"
    topics = ("identity.events",)
    transactional = False

    def __init__(self, settings: ShareSettings) -> None:
        self.settings = settings

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        from studyshare.share.service_layer.handlers import ShareService

        service = ShareService(ctx.db, self.settings)
        for envelope in events:
            e = registry.payload(envelope)
            if e is None:
                continue
            if envelope.event_type == "GroupMemberRemoved":
                keys = await service.holder_keys_of(e.user_id, left=e.group_id)
                by = e.removed_by
            elif envelope.event_type == "UserRolesChanged":
                groups = await service.directory.groups_of(e.user_id)
                keys = {e.user_id, *groups, *e.department_ids, *e.admin_of}
                by = e.changed_by
            else:
                continue
            await service.end_reshares_no_longer_held(
                e.user_id, keys, by, left_at=envelope.occurred_at
            )
