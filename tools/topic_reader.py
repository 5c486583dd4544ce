"""Read a whole topic from its start to its end (taken from Fetch responses: the embedded
broker under-reports ListOffsets), and a consumer group's committed offsets."""

from __future__ import annotations

import time
from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from stream.kafka_security import PLAINTEXT, KafkaSecurity

__all__ = ["committed_offsets", "read_until_idle"]

_FETCH_BYTES = 8 * 1024 * 1024  # a partition's records per fetch: the broker answers slowly


def read_until_idle(
    bootstrap: str,
    topic: str,
    partitions: int,
    idle_s: float = 1.5,
    *,
    at_least: int = 0,
    timeout_s: float = 300.0,
    security: KafkaSecurity = PLAINTEXT,
) -> Iterator[ConsumerRecord]:
    """Every record of ``topic``'s ``partitions``: until each partition is read to the high
    watermark its Fetch responses report and none arrived for ``idle_s``, and at least
    ``at_least`` arrived. Quiet alone is not the end: far into a large partition the embedded
    broker answers fetches empty for a while. TimeoutError after ``timeout_s``."""
    # kafka-python checks CRCs in pure Python unless the crc32c package is there: minutes for a
    # million records. The broker checked them when they were produced.
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        check_crcs=False,
        max_partition_fetch_bytes=_FETCH_BYTES,
        **security.client_kwargs(),
    )
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        started = idle_since = time.monotonic()
        read = 0
        while not (
            read >= at_least
            and time.monotonic() - idle_since >= idle_s
            and all(_read_to_end(consumer, tp) for tp in assigned)
        ):
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{topic}: {read} records read in {timeout_s:g} s, not to its end")
            for records in consumer.poll(timeout_ms=200).values():
                idle_since = time.monotonic()
                read += len(records)
                yield from records
    finally:
        consumer.close()


def _read_to_end(consumer: KafkaConsumer, tp: TopicPartition) -> bool:
    end = consumer.highwater(tp)
    return end is not None and consumer.position(tp) >= end


def committed_offsets(
    bootstrap: str,
    group: str,
    topic: str,
    partitions: int,
    security: KafkaSecurity = PLAINTEXT,
    timeout_s: float = 30.0,
) -> list[int]:
    """The offset ``group`` has committed on each partition of ``topic`` (0 where none).
    ``kafka.errors.KafkaTimeoutError`` when a partition's answer takes over ``timeout_s``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **security.client_kwargs()
    )
    try:
        return [
            consumer.committed(TopicPartition(topic, p), timeout_ms=int(timeout_s * 1000)) or 0
            for p in range(partitions)
        ]
    finally:
        consumer.close()
