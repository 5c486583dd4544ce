"""Consumer lag per owned partition, and what a published batch tells the metrics."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP

from stream.metrics import StreamMetrics
from stream.monitor import ConsumerLag, faust_committed, owned_progress
from tests.stream.test_agents import Producer, agent_with, event, events

pytestmark = pytest.mark.unit


class Consumer:
    """What the monitor reads of Faust's consumer: its assignment, highwaters, the offsets it
    believes committed, the messages it tracks until they are acknowledged."""

    def __init__(self, highwaters: dict[TP, int | None], committed: dict[TP, int] | None = None) -> None:
        self.highwaters = highwaters
        self._committed_offset = committed or {}
        self.unacked: list[Any] = []  # Faust's is a WeakSet of messages

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]


def by_partition(metrics: StreamMetrics, sample_name: str) -> dict[str, float]:
    """The samples called ``sample_name``, by their partition label."""
    return {
        sample.labels["partition"]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == sample_name
    }


def lag_values(metrics: StreamMetrics) -> dict[str, float]:
    return by_partition(metrics, "nextaction_consumer_lag_records")


def acknowledged(partition: int, *offsets: int) -> list[Any]:
    return [
        SimpleNamespace(message=SimpleNamespace(topic="events", partition=partition, offset=offset))
        for offset in offsets
    ]


def test_lag_counts_the_records_after_the_last_acknowledged_one_of_each_owned_partition() -> None:
    metrics = StreamMetrics.create()
    lag = ConsumerLag(metrics.consumer_lag, "events")
    p0, p1, p2, changelog = TP("events", 0), TP("events", 1), TP("events", 2), TP("app-windows-changelog", 0)
    consumer = Consumer({p0: 120, p1: 50, p2: None, changelog: 999}, committed={p1: 40})
    lag.acknowledged(acknowledged(0, 98, 99))
    lag.update(owned_progress(cast(Any, consumer), "events", faust_committed(cast(Any, consumer)), {}))
    # p1: nothing acknowledged here yet, so from the group's committed offset; p2: not fetched
    assert lag_values(metrics) == {"0": 20, "1": 10}

    lag.acknowledged(acknowledged(0, 100, 119))
    del consumer.highwaters[p1]  # revoked: its lag is another worker's to report
    lag.update(owned_progress(cast(Any, consumer), "events", faust_committed(cast(Any, consumer)), {}))
    assert lag_values(metrics) == {"0": 0}


def test_lag_counts_to_the_partition_end_the_broker_gave_when_the_consumer_no_longer_fetches() -> None:
    metrics = StreamMetrics.create()
    lag = ConsumerLag(metrics.consumer_lag, "events")
    p0, p1 = TP("events", 0), TP("events", 1)
    consumer = Consumer({p0: 120, p1: None}, committed={p0: 120, p1: 40})
    lag.acknowledged(acknowledged(0, 119))
    # p0's last fetch saw 120 records and none was fetched since; p1 was never fetched
    ends = {p0: 1600, p1: 50}  # as the broker last answered
    lag.update(owned_progress(cast(Any, consumer), "events", faust_committed(cast(Any, consumer)), ends))
    assert lag_values(metrics) == {"0": 1480, "1": 10}


async def test_a_published_batch_names_its_model_version_and_stamps_the_publication() -> None:
    producer, acked = Producer(), []
    agent, metrics, _ = agent_with(producer)
    before = time.time()
    completing = asyncio.ensure_future(
        agent.complete(await agent.prepare(events([event("a1", "ann", 1)], acked)), None)
    )
    await asyncio.sleep(0.01)
    producer.deliver()
    await completing
    values = {s.name: s for family in metrics.registry.collect() for s in family.samples}
    assert values["nextaction_model_info"].labels == {"name": "nextaction", "version": "7"}
    assert before <= values["nextaction_last_publication_timestamp_seconds"].value <= time.time()
