"""A one-second timer on the worker's event loop: the liveness heartbeat, and the consumer lag
of the input partitions this worker owns."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, ConsumerT, EventT
from mode import Service
from prometheus_client import Gauge

from stream.health import Health

__all__ = ["ConsumerLag", "Monitor"]

_INTERVAL_S = 1.0


class ConsumerLag:
    """Per owned partition of ``topic``: the partition's highwater (the offset the next record
    will get, as the consumer last fetched it) less the next offset to acknowledge."""

    def __init__(self, gauge: Gauge, topic: str) -> None:
        self._gauge = gauge
        self._topic = topic
        self._next_offsets: dict[int, int] = {}  # partition -> after the last acknowledged offset
        self._shown: set[int] = set()

    def acknowledged(self, events: Iterable[EventT]) -> None:
        for event in events:
            message = event.message
            if message.topic == self._topic:
                following = message.offset + 1
                if following > self._next_offsets.get(message.partition, 0):
                    self._next_offsets[message.partition] = following

    def update(self, consumer: ConsumerT) -> None:
        owned: dict[int, int] = {}
        for tp in consumer.assignment():
            if tp.topic != self._topic:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:  # not fetched since the assignment: unknown, not zero
                continue
            owned[tp.partition] = max(0, highwater - self._next_offset(consumer, tp))
        for partition in self._shown - owned.keys():  # revoked: its lag is another worker's now
            self._gauge.remove(self._topic, str(partition))
        for partition, lag in owned.items():
            self._gauge.labels(self._topic, str(partition)).set(lag)
        self._shown = set(owned)

    def _next_offset(self, consumer: ConsumerT, tp: TP) -> int:
        # Before this worker acknowledges anything of a partition (just assigned, or stuck on
        # its first batch) the group's committed offset is where it stands; it is also ahead
        # of what this worker acknowledged before another worker owned the partition.
        committed: int | None = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        return max(self._next_offsets.get(tp.partition, 0), committed or 0)


class Monitor(Service):
    """Runs beside the app in the worker; from its start, so that the heartbeat also beats
    while the windows table is restored (Faust starts its own timers only after that)."""

    def __init__(self, app: faust.App, health: Health, lag: ConsumerLag, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._app = app
        self._health = health
        self._lag = lag

    @Service.timer(_INTERVAL_S)
    async def _tick(self) -> None:
        self._health.tick()
        with contextlib.suppress(ConsumerNotStarted):  # the app starts it just after this service
            self._lag.update(self._app.consumer)
