"""Drop identity's own read models and rebuild them from its event stream.

The inline read models (`users`, `groups`, `memberships`, `invitations`, `departments`,
`recipients`) are pure functions of the events; credentials, sessions and failure counters are
not read models (they hold secrets and hot-path state that never travel in events) and are kept.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from studyshare.identity.adapters.read_models import (
    DEPARTMENTS,
    GROUPS,
    INVITATIONS,
    MEMBERSHIPS,
    RECIPIENTS,
    USERS,
    ReadModels,
    ensure_indexes,
)
from studyshare.plumbing.eventstore import EventStore

READ_MODELS = (USERS, GROUPS, MEMBERSHIPS, INVITATIONS, DEPARTMENTS, RECIPIENTS)


async def rebuild_read_models(db: AsyncDatabase) -> int:
    """Replay every stored identity event into fresh read models; return how many."""
    for name in READ_MODELS:
        await db.drop_collection(name)
    await ensure_indexes(db)
    events = await EventStore(db).all_events()
    await ReadModels(db).apply(events)
    return len(events)
