"""Copy the valid events of the input topic into a JSON-lines file, to train on what the
service actually saw (``nextaction train --format events``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from kafka import KafkaConsumer, TopicPartition

from stream.settings import Settings
from stream.validation import InvalidEvent, parse_event

__all__ = ["DumpStats", "dump_events"]


@dataclass(frozen=True)
class DumpStats:
    written: int
    skipped_invalid: int


def dump_events(bootstrap: str, settings: Settings, out: Path, idle_s: float = 2.0) -> DumpStats:
    """Every partition from its start until no record arrived for ``idle_s`` (partition ends
    are not asked for: the embedded broker under-reports them). Invalid events, which the
    worker dead-letters, are skipped the same way."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(settings.topic_events, p) for p in range(settings.topic_partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    written = skipped = 0
    idle_since = time.monotonic()
    try:
        with out.open("wb") as lines:
            while time.monotonic() - idle_since < idle_s:
                for records in consumer.poll(timeout_ms=200).values():
                    idle_since = time.monotonic()
                    for record in records:
                        try:
                            parse_event(record.value, record.key, settings.max_event_bytes)
                        except InvalidEvent:
                            skipped += 1
                            continue
                        lines.write(orjson.dumps(orjson.loads(record.value)) + b"\n")
                        written += 1
    finally:
        consumer.close()
    return DumpStats(written, skipped)
