"""A worker's consumer lag, measured against the real broker."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from studyshare.contracts.topics import Topic
from studyshare.plumbing.kafka import ensure_topics, producer, topic_partitions
from studyshare.plumbing.lag import LAG, LagMeter
from studyshare.plumbing.testing import publish_events, unique

from .conftest import otp_failures


async def own_topic(settings) -> str:
    """A topic of this test alone: other tests on the same broker write to `share.events`."""
    name = unique("lag-test")
    await ensure_topics(settings.kafka, (Topic(name, 4, "test", ()),))
    return name


async def commit_at_the_end(settings, group: str, topic: str) -> None:
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, (topic,))
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def publish_one_by_one(settings, topic: str, envelopes) -> None:
    """One record per produce request: the local broker (Tansu) reports the end offset of a
    partition as one past the *first* record of its last batch, Kafka one past the last."""
    kafka = producer(settings)
    await kafka.start()
    try:
        for envelope in envelopes:
            await kafka.send_and_wait(
                topic,
                key=envelope.aggregate_id.encode(),
                value=envelope.to_json_bytes(),
            )
    finally:
        await kafka.stop()


async def test_lag_counts_the_events_a_group_has_not_committed(real_infra) -> None:
    settings = real_infra.settings()
    group = unique("studyshare-lag-worker")
    topic = await own_topic(settings)
    await commit_at_the_end(settings, group, topic)
    meter = LagMeter(settings.kafka, group, [topic])
    try:
        assert sum((await meter.measure()).values()) == 0
        await publish_one_by_one(settings, topic, otp_failures(unique("bkt"), 3))
        lag = await meter.measure()
        assert sum(lag.values()) == 3
        (behind,) = [tp for tp, n in lag.items() if n]
        gauge = LAG.labels(group, topic, str(behind.partition))
        assert gauge._value.get() == 3
        await commit_at_the_end(settings, group, topic)
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
