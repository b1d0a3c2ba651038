"""Kafka adapters: producer settings, topic creation from the topic table, reading events."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.topics import TOPICS, Topic
from studyshare.plumbing.kafka_connection import KafkaConnection, kafka_connection
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.settings import ServiceSettings

log = get_logger(__name__)


def decode(raw: bytes) -> EventEnvelope | None:
    """The envelope of a message, or None (logged) for one that is not an event."""
    try:
        return EventEnvelope.from_json_bytes(raw)
    except ValueError:
        log.error("event.undecodable", size=len(raw))
        return None


async def topic_partitions(
    consumer: AIOKafkaConsumer, topics: tuple[str, ...]
) -> list[TopicPartition]:
    """Every partition of `topics` the broker knows now (none for a missing topic)."""
    await consumer._client.force_metadata_update()
    return [
        TopicPartition(topic, partition)
        for topic in topics
        for partition in sorted(consumer.partitions_for_topic(topic) or ())
    ]


def producer(settings: ServiceSettings, **overrides: object) -> AIOKafkaProducer:
    options: dict[str, object] = {
        **settings.kafka.client_options(),
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "client_id": f"{settings.service_name}-relay",
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def ensure_topics(
    bootstrap: str | KafkaConnection,
    topics: tuple[Topic, ...] = TOPICS,
    *,
    replication_factor: int | None = 1,
    attempts: int = 60,
) -> None:
    """Create every topic of the table that is missing, waiting for the broker to answer."""
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(
            **kafka_connection(bootstrap).client_options(), client_id="studyshare-topics"
        )
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    t.name,
                    t.partitions,
                    replication_factor or t.replication_factor,
                    topic_configs=dict(t.config),
                )
                for t in topics
                if t.name not in existing
            ]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
                log.info("topics.created", topics=[t.name for t in missing])
            return
        except KafkaConnectionError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
