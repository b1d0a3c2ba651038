"""Consumer lag: how many events a worker's consumer group has not yet committed, per partition.

A worker measures its own group every `consumer_lag_interval_s` (the group's committed offsets
against the topics' end offsets) and serves the result as `studyshare_consumer_lag_messages`.
Every replica of a worker measures the same group: dashboards and alerts take the maximum.
KEDA scales the workers on the same figure, read from the brokers itself (`ScaledObject`s of
the prod overlay).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge

from studyshare.plumbing.kafka import topic_partitions
from studyshare.plumbing.kafka_connection import KafkaConnection

LAG = Gauge(
    "studyshare_consumer_lag_messages",
    "Events in a partition that the consumer group has not committed yet",
    ["group", "topic", "partition"],
)


class LagMeter:
    """Measures one consumer group's lag on its topics with one admin and one group-less
    consumer, kept open between measurements."""

    def __init__(self, connection: KafkaConnection, group: str, topics: Sequence[str]) -> None:
        self.connection = connection
        self.group = group
        self.topics = tuple(topics)
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            options = self.connection.client_options()
            admin = AIOKafkaAdminClient(**options, client_id=f"{self.group}-lag")
            consumer = AIOKafkaConsumer(
                **options, client_id=f"{self.group}-lag", enable_auto_commit=False
            )
            await admin.start()
            await consumer.start()
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def measure(self) -> dict[TopicPartition, int]:
        """Lag per partition, also set on the gauge. A partition the group never committed
        counts from the start of the log (the workers read from the earliest offset)."""
        admin, consumer = await self._clients()
        partitions = await topic_partitions(consumer, self.topics)
        if not partitions:
            return {}
        committed = await admin.list_consumer_group_offsets(self.group, partitions=partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        lag = {}
        for tp in partitions:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            lag[tp] = max(ends[tp] - position, 0)
            LAG.labels(self.group, tp.topic, str(tp.partition)).set(lag[tp])
        return lag

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()
        self._admin = self._consumer = None
