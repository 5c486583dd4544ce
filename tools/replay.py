"""Produce events to the input topic at a steady rate (demo, benchmarks, backfills)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from serving.data import DataFormatError
from stream.kafka_security import PLAINTEXT, KafkaSecurity

__all__ = ["ReplayStats", "event_message", "file_messages", "invalid_samples", "replay"]


@dataclass(frozen=True)
class ReplayStats:
    sent: int
    seconds: float


def event_message(event: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """An input event as producers send it: (key = user id, value = JSON)."""
    return str(event["user_id"]).encode(), orjson.dumps(event)


def file_messages(path: Path) -> list[tuple[bytes, bytes]]:
    """A JSON-lines event file as messages: each line sent as written, keyed by its
    ``user_id`` (the worker dead-letters what breaks the contract). The whole file is read
    first, so a line that cannot be keyed stops the replay before anything is sent."""
    messages = []
    with path.open("rb") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                user_id = orjson.loads(line).get("user_id")
            except (orjson.JSONDecodeError, AttributeError):
                user_id = None
            if not isinstance(user_id, str):
                raise DataFormatError(path, line_no, "expected a JSON object with a string user_id")
            messages.append((user_id.encode(), line.strip()))
    return messages


def invalid_samples(user_id: str) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs breaking the contract in each documented way, for demos and tests."""
    good = {"event_id": "bad", "user_id": user_id, "item_id": "i0001", "action": "view", "ts": 1}
    key = user_id.encode()
    return [
        (key, b"this is not json"),
        (
            key,
            orjson.dumps({**good, "event_id": "bad-action", "action": "like", "ts": 1_700_000_000_000}),
        ),
        (key, orjson.dumps({"event_id": "bad-missing", "user_id": user_id})),
        (key, orjson.dumps({**good, "event_id": "bad-ts", "ts": 1_700_000_000})),
        (key, orjson.dumps({**good, "event_id": "bad-size", "context": {"blob": "x" * 8000}})),
        (b"someone-else", orjson.dumps({**good, "event_id": "bad-key", "ts": 1_700_000_000_000})),
    ]


def replay(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes, bytes]],
    *,
    rate_per_s: float,
    on_sent: Callable[[bytes, bytes], None] | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> ReplayStats:
    """Send ``(key, value)`` messages at about ``rate_per_s``; returns once all are acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5, **security.client_kwargs())
    started = time.perf_counter()
    sent = 0
    try:
        for key, value in messages:
            ahead = sent / rate_per_s - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
            producer.send(topic, key=key, value=value)
            sent += 1
            if on_sent is not None:
                on_sent(key, value)
        producer.flush()
    finally:
        producer.close()
    return ReplayStats(sent=sent, seconds=time.perf_counter() - started)
