"""Benchmark traffic: the project's synthetic generator, replayed as an endless event supply.

Users act in sessions, items follow a Zipf-like popularity and the funnel makes several
events per item, as in :mod:`serving.synthetic`. The same user population keeps acting:
each further chunk of the supply moves time forward and gets fresh event ids, so windows fill
up and slide as they would in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from aiokafka.partitioner import DefaultPartitioner

from serving.synthetic import SyntheticConfig, generate_events

__all__ = ["EventSupply", "Message"]

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Message:
    """One input event, serialized, with the partition its key maps to."""

    user_id: str
    event_id: str
    key: bytes
    value: bytes
    partition: int


@dataclass
class EventSupply:
    """Hands out never-repeating events of ``users`` users, generated in chunks as needed."""

    users: int
    partitions: int = 1
    span_days: float = 1.0
    events_per_user: float = 10.0  # per chunk, on average
    seed: int = 0
    _chunk: int = 0
    _buffer: list[Message] = field(default_factory=list)
    _partition_of: dict[bytes, int] = field(default_factory=dict)

    def take(self, count: int) -> list[Message]:
        while len(self._buffer) < count:
            self._buffer.extend(self._generate())
        taken, self._buffer = self._buffer[:count], self._buffer[count:]
        return taken

    def _generate(self) -> list[Message]:
        chunk = self._chunk
        self._chunk += 1
        config = SyntheticConfig(
            n_users=self.users,
            seed=self.seed + chunk,
            span_days=self.span_days,
            mean_events_per_user=self.events_per_user,
            start_ms=1_700_000_000_000 + int(chunk * self.span_days * _DAY_MS),
        )
        messages = []
        for event in generate_events(config):
            event["event_id"] = f"{event['event_id']}.{chunk}"
            key = event["user_id"].encode()
            messages.append(
                Message(event["user_id"], event["event_id"], key, orjson.dumps(event), self._partition(key))
            )
        return messages

    def _partition(self, key: bytes) -> int:
        """The partition Kafka's default partitioner gives the key (murmur2), as producers do."""
        if key not in self._partition_of:
            partitions = list(range(self.partitions))
            self._partition_of[key] = DefaultPartitioner()(key, partitions, partitions)
        return self._partition_of[key]
