"""Faust table recovery from the changelog on the embedded broker, with and without the remedy.

A worker subprocess stores updates in a changelog-backed table and is stopped; a second worker
recovers the table from the changelog. With partition ends from Fetch (``stream.tansu_transport``)
recovery is exact; with Faust's stock ListOffsets it stops short on Tansu.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from stream.settings import Settings
from stream.tansu_transport import fetch_highwaters
from stream.transports import LEAN_SCHEME, TANSU_SCHEME, faust_broker_url
from tools.embedded.process import ServerProcess
from tools.polling import wait_until

APP = Path(__file__).with_name("recovery_app.py")
UPDATES = 1000


@contextmanager
def worker(broker_url: str, app_id: str, workdir: Path) -> Iterator[Path]:
    """A running recovery_app worker; yields its table dump once its first recovery is done."""
    workdir.mkdir()
    dump = workdir / "table.json"
    process = ServerProcess(
        "faust worker",
        [sys.executable, str(APP), broker_url, app_id, str(dump)],
        log_path=workdir / "worker.log",
        ready=dump.exists,
        start_timeout_s=60,
        stop_timeout_s=30,
    )
    process.start()
    try:
        yield dump
    finally:
        process.stop()


def produce(bootstrap: str, topic: str, updates: dict[str, int]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    for key, value in updates.items():
        producer.send(topic, key=key.encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()


def partition_ends(bootstrap: str, topic: str) -> tuple[int, int]:
    """(ListOffsets' end, Fetch highwater) of partition 0 of ``topic``."""

    async def ends() -> tuple[int, int]:
        tp = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            listed = await consumer.end_offsets([tp])
            fetched = await fetch_highwaters(consumer, [tp])
        finally:
            await consumer.stop()
        return listed[tp], fetched[tp]

    return asyncio.run(ends())


def write_stop_and_recover(bootstrap: str, broker_kind: str, tmp_path: Path) -> tuple[dict, dict]:
    """Write UPDATES table entries through one worker, stop it, recover them in another."""
    settings = Settings(kafka_bootstrap=bootstrap, kafka_broker_kind=broker_kind)
    broker_url = faust_broker_url(settings)
    app_id = f"recovery-{uuid.uuid4().hex[:8]}"
    changelog = f"{app_id}-state-changelog"
    written = {f"user-{i:04d}": i for i in range(UPDATES)}

    with worker(broker_url, app_id, tmp_path / "first"):
        produce(bootstrap, f"{app_id}-updates", written)
        wait_until(
            lambda: partition_ends(bootstrap, changelog)[1] >= UPDATES,
            timeout_s=30,
            what="the first worker storing every update",
            interval_s=0.2,
        )
    listed_end, end = partition_ends(bootstrap, changelog)
    # The case that matters: the changelog's last batch holds several records.
    assert listed_end < end == UPDATES

    with worker(broker_url, app_id, tmp_path / "second") as dump:
        recovered = json.loads(dump.read_text())
    return written, recovered


@pytest.mark.integration
def test_list_offsets_under_reports_where_fetch_highwater_is_exact(kafka_broker: str) -> None:
    """Why the Tansu transport exists: ListOffsets(latest) stops at the last batch's start."""
    topic = f"quirk-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks=1, linger_ms=50)
    for _ in range(10):
        producer.send(topic, b"x", partition=0)
    producer.flush()
    producer.close()
    listed, fetched = partition_ends(kafka_broker, topic)
    assert fetched == 10
    assert listed == 1  # the batch's base offset (0) + 1


@pytest.mark.integration
def test_recovery_with_fetch_highwaters_is_exact(kafka_broker: str, tmp_path: Path) -> None:
    written, recovered = write_stop_and_recover(kafka_broker, "tansu", tmp_path)
    assert recovered == written


@pytest.mark.integration
def test_recovery_with_list_offsets_loses_the_tail_on_tansu(kafka_broker: str, tmp_path: Path) -> None:
    """Why the remedy exists. Should this fail, Tansu reports ends right and it can go."""
    written, recovered = write_stop_and_recover(kafka_broker, "kafka", tmp_path)
    assert 0 < len(recovered) < UPDATES
    assert recovered == dict(list(written.items())[: len(recovered)])  # only the tail is gone


@pytest.mark.unit
@pytest.mark.parametrize(("kind", "scheme"), [("kafka", LEAN_SCHEME), ("tansu", TANSU_SCHEME)])
def test_the_setting_picks_the_transport(kind: str, scheme: str) -> None:
    settings = Settings(kafka_bootstrap="kafka-1:9092,kafka-2:9092", kafka_broker_kind=kind)
    assert faust_broker_url(settings) == f"{scheme}://kafka-1:9092,kafka-2:9092"
