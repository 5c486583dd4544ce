"""What the stream could reach at best: reading the events with no processing, and Triton
scoring pre-built windows with nothing else running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.inference import TritonScorer
from stream.records import Window

__all__ = ["model_only_predictions_per_s", "raw_consume_events_per_s"]


async def raw_consume_events_per_s(bootstrap: str, topic: str, partitions: int, count: int) -> float:
    """Plain aiokafka reading ``count`` records from the start of ``topic``, no processing."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        read, started = 0, time.perf_counter()
        while read < count:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                read += len(records)
        return read / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def model_only_predictions_per_s(
    url: str,
    model_name: str,
    windows: Sequence[Window],
    *,
    in_flight: int,
    seconds: float,
) -> float:
    """Windows scored per second by Triton through the stream's own client, ``in_flight``
    requests at a time of the model's configured largest batch, for about ``seconds``."""
    scorer = TritonScorer(url, model_name, timeout_s=30, max_in_flight=in_flight)
    batch_size = (await scorer.start()).max_batch_size
    batches = [windows[i : i + batch_size] for i in range(0, len(windows) - batch_size + 1, batch_size)]
    scored = 0
    deadline = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        nonlocal scored
        n = offset
        while time.perf_counter() < deadline:
            result = await scorer.score(batches[n % len(batches)])
            scored += len(result)  # not `scored += len(await ...)`: that adds to a stale value
            n += in_flight

    try:
        await scorer.score(batches[0])  # warm-up: first calls load lazily initialized state
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(client(i) for i in range(in_flight)))
        return scored / (time.perf_counter() - started)
    finally:
        await scorer.close()
