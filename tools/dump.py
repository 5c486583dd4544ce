"""Copy the valid events of the input topic into a JSON-lines file, to train on what the
service actually saw (``nextaction train --format events``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stream.kafka_security import KafkaSecurity
from stream.settings import Settings
from stream.validation import InvalidEvent, parse_event
from tools.topic_reader import read_until_idle

__all__ = ["DumpStats", "TopicEvent", "dump_events", "topic_events"]


@dataclass(frozen=True)
class DumpStats:
    written: int
    skipped_invalid: int


@dataclass(frozen=True)
class TopicEvent:
    """One record of the events topic, where it lies, and the event as training reads it
    (None: invalid, the worker dead-letters it)."""

    partition: int
    offset: int
    event: dict[str, Any] | None


def topic_events(bootstrap: str, settings: Settings, idle_s: float = 2.0) -> Iterator[TopicEvent]:
    """Every partition from its start until no record arrived for ``idle_s``. Events are read
    as the worker reads them (``ts`` in epoch milliseconds, whatever form was sent)."""
    security = KafkaSecurity.from_settings(settings)
    topic, partitions = settings.topic_events, settings.topic_partitions
    for record in read_until_idle(bootstrap, topic, partitions, idle_s, security=security):
        try:
            event = parse_event(record.value, record.key, settings.max_event_bytes)
        except InvalidEvent:
            yield TopicEvent(record.partition, record.offset, None)
            continue
        doc = {
            "event_id": event.event_id,
            "user_id": event.user_id,
            "item_id": event.item_id,
            "action": event.action,
            "ts": event.ts_ms,
        }
        if event.context is not None:
            doc["context"] = event.context
        yield TopicEvent(record.partition, record.offset, doc)


def dump_events(
    bootstrap: str,
    settings: Settings,
    out: Path,
    idle_s: float = 2.0,
    on_record: Callable[[], None] | None = None,
) -> DumpStats:
    """The topic's valid events as JSON lines; invalid events, which the worker dead-letters,
    are skipped the same way. ``on_record`` is called for each record read (progress)."""
    written = skipped = 0
    with out.open("wb") as lines:
        for record in topic_events(bootstrap, settings, idle_s):
            if on_record is not None:
                on_record()
            if record.event is None:
                skipped += 1
                continue
            lines.write(orjson.dumps(record.event) + b"\n")
            written += 1
    return DumpStats(written, skipped)
