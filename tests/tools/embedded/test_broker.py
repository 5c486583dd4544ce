"""The embedded Tansu broker: lifecycle and a client round trip."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from tools.embedded import EmbeddedBroker, EmbeddedServerError
from tools.embedded.ports import is_free

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
