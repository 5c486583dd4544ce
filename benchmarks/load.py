"""Drive and observe workers from outside: produce at a set rate, read what they publish, and
add up their progress from their metrics endpoints.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tools.metrics_scrape import scrape

__all__ = ["OutputReader", "Producer", "Record", "worker_totals"]

# How often the rate-controlled producer hands due messages over: its pacing granularity, and
# one produce request per partition per tick for the broker to handle.
_TICK_S = 0.01
_TRIGGER_FIELD = b'"trigger_event_id":"'


def _trigger_event_id(value: bytes) -> str:
    """The record's trigger event id without parsing the whole record (the reader shares the
    machine with the worker it measures); escaped ids take the full parse."""
    start = value.find(_TRIGGER_FIELD) + len(_TRIGGER_FIELD)
    end = value.find(b'"', start)
    if start < len(_TRIGGER_FIELD) or b"\\" in value[start:end]:
        return str(orjson.loads(value)["trigger_event_id"])
    return value[start:end].decode()


class Record(Protocol):
    """What the producer sends of a message (:class:`benchmarks.workload.Message` is one)."""

    @property
    def key(self) -> bytes: ...

    @property
    def value(self) -> bytes: ...

    @property
    def partition(self) -> int: ...


class Producer:
    """An aiokafka producer that appends pre-serialized messages straight into record batches."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks=1, linger_ms=5, max_batch_size=512 * 1024
        )
        self._topic = topic

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, messages: Sequence[Record]) -> float:
        """Send all at once (a backlog); returns the send time, epoch ms."""
        now_ms = time.time() * 1000
        await asyncio.gather(*await self._send_batches(messages, int(now_ms)))
        return now_ms

    async def offer(self, messages: Sequence[Record], rate: float) -> list[float]:
        """Send at ``rate`` messages/s; returns each message's send time (epoch ms)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent_ms: list[float] = []
        deliveries: list[asyncio.Future[object]] = []
        while len(sent_ms) < len(messages):
            due = min(len(messages), int((loop.time() - started) * rate) + 1)
            if due > len(sent_ms):
                now_ms = time.time() * 1000
                deliveries.extend(await self._send_batches(messages[len(sent_ms) : due], int(now_ms)))
                sent_ms.extend([now_ms] * (due - len(sent_ms)))
            await asyncio.sleep(_TICK_S)
        await asyncio.gather(*deliveries)
        return sent_ms

    async def _send_batches(
        self, messages: Sequence[Record], timestamp_ms: int
    ) -> list[asyncio.Future[object]]:
        batches: dict[int, Any] = {}
        deliveries = []
        for message in messages:
            batch = batches.get(message.partition)
            if batch is None:
                batch = batches[message.partition] = self._producer.create_batch()
            if batch.append(key=message.key, value=message.value, timestamp=timestamp_ms) is None:
                deliveries.append(
                    await self._producer.send_batch(batch, self._topic, partition=message.partition)
                )
                batch = batches[message.partition] = self._producer.create_batch()
                batch.append(key=message.key, value=message.value, timestamp=timestamp_ms)
        for partition, batch in batches.items():
            deliveries.append(await self._producer.send_batch(batch, self._topic, partition=partition))
        return deliveries


@dataclass
class OutputReader:
    """Reads the recommendations topic in the background: user -> (trigger, published ms)."""

    bootstrap: str
    topic: str
    partitions: int
    published: defaultdict[str, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OutputReader:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await consumer.start()
        consumer.assign([TopicPartition(self.topic, p) for p in range(self.partitions)])
        await consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._read(consumer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                    for record in records:
                        user_id = record.key.decode()
                        self.published[user_id].append((_trigger_event_id(record.value), record.timestamp))
        finally:
            await consumer.stop()


_TOTALS = (
    "nextaction_event_to_publication_seconds_count",
    "nextaction_recommendations_published_total",
)


def worker_totals(metrics_urls: Sequence[str]) -> dict[str, float]:
    """Counters of the workers so far, summed over their metrics endpoints: processed (valid
    events whose recommendations are published) and published (recommendations)."""
    totals = dict.fromkeys(("processed", "published"), 0.0)
    for url in metrics_urls:
        values = scrape(url)
        for short, name in zip(totals, _TOTALS, strict=True):
            totals[short] += values.get(name, 0.0)
    return totals
