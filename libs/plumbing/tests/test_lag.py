"""A worker's consumer lag, measured against the real broker."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from studyshare.contracts.topics import topic_for_aggregate
from studyshare.plumbing.kafka import producer, topic_partitions
from studyshare.plumbing.lag import LAG, LagMeter
from studyshare.plumbing.testing import publish_events, unique

from .conftest import otp_failures


async def commit_at_the_end(settings, group: str) -> None:
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, ("share.events",))
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def publish_one_by_one(settings, envelopes) -> None:
    """One record per produce request: the local broker (Tansu) reports the end offset of a
    partition as one past the *first* record of its last batch, Kafka one past the last."""
    kafka = producer(settings)
    await kafka.start()
    try:
        for envelope in envelopes:
            await kafka.send_and_wait(
                topic_for_aggregate(envelope.aggregate_type),
                key=envelope.aggregate_id.encode(),
                value=envelope.to_json_bytes(),
            )
    finally:
        await kafka.stop()


async def test_lag_counts_the_events_a_group_has_not_committed(real_infra) -> None:
    settings = real_infra.settings()
    group = unique("studyshare-lag-worker")
    await commit_at_the_end(settings, group)
    meter = LagMeter(settings.kafka, group, ["share.events"])
    try:
        assert sum((await meter.measure()).values()) == 0
        await publish_one_by_one(settings, otp_failures(unique("bkt"), 3))
        lag = await meter.measure()
        assert sum(lag.values()) == 3
        (behind,) = [tp for tp, n in lag.items() if n]
        gauge = LAG.labels(group, "share.events", str(behind.partition))
        assert gauge._value.get() == 3
        await commit_at_the_end(settings, group)
        assert sum((await meter.measure()).values()) == 0
    finally:
        await meter.close()


async def test_a_group_that_never_committed_is_behind_by_the_whole_log(real_infra) -> None:
    settings = real_infra.settings()
    await publish_events(real_infra, otp_failures(unique("bkt"), 1))
    meter = LagMeter(settings.kafka, unique("studyshare-new-worker"), ["share.events"])
    try:
        assert sum((await meter.measure()).values()) >= 1
    finally:
        await meter.close()
