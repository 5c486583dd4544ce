"""The embedded Tansu broker: lifecycle, a client round trip, and the ListOffsets quirk."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaConsumer, KafkaProducer

from stream.embedded import EmbeddedBroker, EmbeddedServerError
from stream.embedded.ports import is_free
from stream.kafka_compat import fetch_highwaters

pytestmark = pytest.mark.integration


def test_starts_and_stops_within_seconds(embedded_dir: Path) -> None:
    started_at = time.monotonic()
    with EmbeddedBroker(embedded_dir) as broker:
        assert time.monotonic() - started_at < 5
        assert not is_free(broker.port)
        stopping_at = time.monotonic()
    assert time.monotonic() - stopping_at < 10
    assert is_free(broker.port)


def test_a_port_in_use_fails_fast(embedded_dir: Path, kafka_broker: str) -> None:
    port = int(kafka_broker.rsplit(":", 1)[1])
    with pytest.raises(EmbeddedServerError, match=f"port {port} is in use"):
        EmbeddedBroker(embedded_dir, port=port).start()


def test_kafka_python_round_trip(kafka_broker: str) -> None:
    topic = f"round-trip-{uuid.uuid4().hex[:8]}"
    sent = [(f"user-{i % 7}".encode(), f"event-{i}".encode()) for i in range(200)]
    # acks=0 breaks the connection on Tansu; 1 and all work.
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks=1)
    for key, value in sent:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()

    # Short timeouts: Tansu takes about half the session timeout to complete a group join.
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    received: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 20
    while len(received) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            received.extend((record.key, record.value) for record in records)
    consumer.close()

    assert sorted(received) == sorted(sent)
    for key in {key for key, _ in sent}:  # per key (so per partition) in order
        assert [v for k, v in received if k == key] == [v for k, v in sent if k == key]


def test_list_offsets_under_reports_where_fetch_highwater_is_exact(kafka_broker: str) -> None:
    """Why ``stream.kafka_compat`` exists: ListOffsets(latest) stops at the last batch's start."""

    async def ends_after_one_batch(count: int) -> tuple[int, int]:
        tp = TopicPartition(f"quirk-{uuid.uuid4().hex[:8]}", 0)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks=1, linger_ms=50)
        await producer.start()
        try:
            sends = [await producer.send(tp.topic, b"x", partition=tp.partition) for _ in range(count)]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker)
        await consumer.start()
        try:
            listed = await consumer.end_offsets([tp])
            fetched = await fetch_highwaters(consumer, [tp])
        finally:
            await consumer.stop()
        return listed[tp], fetched[tp]

    listed, fetched = asyncio.run(ends_after_one_batch(10))
    assert fetched == 10
    assert listed == 1  # the batch's base offset (0) + 1
