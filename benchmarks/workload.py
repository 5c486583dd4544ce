"""Benchmark traffic: the project's synthetic generator, replayed as an endless event supply.

Users act in sessions, items follow a Zipf-like popularity and the funnel makes several
events per item, as in :mod:`serving.synthetic`. The same user population keeps acting:
each further chunk of the supply moves time forward and gets fresh event ids, so windows fill
up and slide as they would in production.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from aiokafka.partitioner import DefaultPartitioner

from serving.synthetic import DAY_MS, SyntheticConfig, generate_events
from stream.records import Window, WindowEvent
from stream.settings import Settings
from stream.validation import parse_event
from stream.window import merge_events
from tools.replay import event_message

__all__ = ["EventSupply", "Message", "sample_windows"]


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
    """Hands out never-repeating events of ``users`` users, generated in chunks as needed.

    Chunk ``n`` covers days ``first_chunk + n`` onward of event time (one chunk a day by
    default); ``prefix`` goes before user and event ids, so that two supplies are two
    populations.
    """

    users: int
    partitions: int = 1
    span_days: float = 1.0
    events_per_user: float = 10.0  # per chunk, on average
    seed: int = 0
    first_chunk: int = 0
    prefix: str = ""
    _chunk: int = 0
    _buffer: list[Message] = field(default_factory=list)
    _partition_of: dict[bytes, int] = field(default_factory=dict)

    def take(self, count: int) -> list[Message]:
        while len(self._buffer) < count:
            self._buffer.extend(self._generate())
        taken, self._buffer = self._buffer[:count], self._buffer[count:]
        return taken

    def _generate(self) -> list[Message]:
        chunk = self.first_chunk + self._chunk
        self._chunk += 1
        config = SyntheticConfig(
            n_users=self.users,
            seed=self.seed + chunk,
            span_days=self.span_days,
            mean_events_per_user=self.events_per_user,
            start_ms=1_700_000_000_000 + int(chunk * self.span_days * DAY_MS),
        )
        messages = []
        for event in generate_events(config):
            event["user_id"] = f"{self.prefix}{event['user_id']}"
            event["event_id"] = f"{self.prefix}{event['event_id']}.{chunk}"
            key, value = event_message(event)
            messages.append(Message(event["user_id"], event["event_id"], key, value, self._partition(key)))
        return messages

    def _partition(self, key: bytes) -> int:
        """The partition Kafka's default partitioner gives the key (murmur2), as producers do."""
        if key not in self._partition_of:
            partitions = list(range(self.partitions))
            self._partition_of[key] = DefaultPartitioner()(key, partitions, partitions)
        return self._partition_of[key]


def sample_windows(supply: EventSupply, settings: Settings, history: int, count: int) -> list[Window]:
    """Windows like those the pipeline scores, for the model-only ceiling: ``history`` events
    of the supply merged per user (what the pipeline phase's backlog leaves), then the windows
    of the users behind the last ``count`` events, as activity picks them."""
    horizon_ms = int(settings.window_horizon_s * 1000)
    messages = supply.take(history)
    arrivals: defaultdict[str, list[WindowEvent]] = defaultdict(list)
    for message in messages:
        event = parse_event(message.value, message.key, settings.max_event_bytes)
        arrivals[message.user_id].append(WindowEvent.of(event))
    size = settings.window_size
    windows = {
        user_id: merge_events((), events, size, horizon_ms).window for user_id, events in arrivals.items()
    }
    return [windows[message.user_id] for message in messages[-count:]]
