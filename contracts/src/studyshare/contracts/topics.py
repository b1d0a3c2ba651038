"""The topic table: every topic, its partition count and which aggregates it carries.

Partition counts are fixed here once; the local platform, the tests and the Kubernetes
`KafkaTopic` resources are all generated from this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    owner: str
    aggregate_types: tuple[str, ...]
    replication_factor: int = 3
    config: dict[str, str] = field(
        default_factory=lambda: {"retention.ms": "-1", "cleanup.policy": "delete"}
    )


TOPICS: tuple[Topic, ...] = (
    Topic(
        "identity.events", 6, "identity", ("User", "LoginAttempt", "Group", "Department", "Patient")
    ),
    Topic("share.events", 12, "share", ("Bucket", "Favorites", "SharePreferences", "Labels")),
    Topic(
        "study.events",
        12,
        "study-store",
        ("Study", "ReferenceNumber", "Transfer", "StudyAccess", "StudyOpening", "BreakTheGlass"),
    ),
    Topic("notify.events", 6, "notify", ("Notification",)),
)

TOPIC_BY_NAME = {t.name: t for t in TOPICS}
_TOPIC_BY_AGGREGATE = {a: t.name for t in TOPICS for a in t.aggregate_types}


def topic_for_aggregate(aggregate_type: str) -> str:
    try:
        return _TOPIC_BY_AGGREGATE[aggregate_type]
    except KeyError:
        raise LookupError(f"no topic carries aggregate type {aggregate_type!r}") from None
