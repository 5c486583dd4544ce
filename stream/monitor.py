"""A one-second timer on the worker's event loop: the liveness heartbeat, the consumer lag of
the input partitions this worker owns, and the stall watch over them (:mod:`stream.stall_watch`),
which judges the group's committed offsets and the partitions' ends as the broker holds them,
read by a timer of its own."""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, ConsumerT, EventT
from mode import Service
from prometheus_client import Counter, Gauge

from stream.health import Health
from stream.stall_watch import BrokerOffsets, PartitionProgress, StallWatch, later

__all__ = ["ConsumerLag", "Monitor", "StallRewinder", "owned_progress"]

log = logging.getLogger(__name__)

_INTERVAL_S = 1.0
_OFFSETS_READ_EVERY_S = 5.0


class ConsumerLag:
    """Per owned partition of ``topic``: the partition's highwater (the offset the next record
    will get, as the consumer last fetched it) less the next offset to acknowledge."""

    def __init__(self, gauge: Gauge, topic: str) -> None:
        self._gauge = gauge
        self.topic = topic
        self._next_offsets: dict[int, int] = {}  # partition -> after the last acknowledged offset
        self._shown: set[int] = set()

    def acknowledged(self, events: Iterable[EventT]) -> None:
        for event in events:
            message = event.message
            if message.topic == self.topic:
                following = message.offset + 1
                if following > self._next_offsets.get(message.partition, 0):
                    self._next_offsets[message.partition] = following

    def update(self, owned: Iterable[PartitionProgress]) -> None:
        lags: dict[int, int] = {}
        for progress in owned:
            if progress.highwater is None:  # not fetched since the assignment: unknown, not zero
                continue
            # Before this worker acknowledges anything of a partition (just assigned, or stuck
            # on its first batch) the group's committed offset is where it stands; it is also
            # ahead of what this worker acknowledged before another worker owned the partition.
            following = max(self._next_offsets.get(progress.partition, 0), progress.committed or 0)
            lags[progress.partition] = max(0, progress.highwater - following)
        for partition in self._shown - lags.keys():  # revoked: its lag is another worker's now
            self._gauge.remove(self.topic, str(partition))
        for partition, lag in lags.items():
            self._gauge.labels(self.topic, str(partition)).set(lag)
        self._shown = set(lags)


def owned_progress(
    consumer: ConsumerT,
    topic: str,
    committed: Mapping[TP, int | None],
    ends: Mapping[TP, int],
    believed: Mapping[TP, int | None] | None = None,
) -> list[PartitionProgress]:
    """The partitions of ``topic`` this worker owns: their ``committed`` offset, end (the later
    of the consumer's last fetch and the broker's last answer in ``ends``: a partition no
    longer fetched keeps its last highwater), events in flight (taken and not yet
    acknowledged) and the offset Faust ``believed`` committed, if given."""
    believed = believed or {}
    in_flight = collections.Counter(
        message.partition
        for message in list(consumer.unacked)
        if message.topic == topic and not message.acked
    )
    return [
        PartitionProgress(
            tp.partition,
            committed.get(tp),
            later(consumer.highwater(tp), ends.get(tp)),
            in_flight[tp.partition],
            believed.get(tp),
        )
        for tp in sorted(consumer.assignment())  # in order, so that what is logged reads in order
        if tp.topic == topic
    ]


@runtime_checkable
class Rewindable(Protocol):
    """A consumer that can read a partition again (:class:`stream.lean_transport.LeanConsumer`)."""

    async def broker_offsets(self, partitions: Iterable[TP], timeout_s: float) -> BrokerOffsets: ...

    def fetch_state(self, tp: TP) -> str: ...

    def held_back(self, tp: TP) -> bool: ...

    def request_rewind(self, tp: TP, offset: int) -> None: ...


def faust_committed(consumer: ConsumerT) -> Mapping[TP, int | None]:
    """The offsets Faust believes committed: those it last read from the broker or last sent
    there, whether or not the broker took them."""
    return consumer._committed_offset  # type: ignore[attr-defined]


class StallRewinder:
    """Has the consumer read a stalled partition again from the group's committed offset, as
    the broker holds it: a commit the broker refused or never got is a stall like any other,
    and so is a partition the consumer no longer fetches, and a commit that creeps short of
    what Faust believes it committed. What it does not read again although the wait is over,
    it says why, at INFO."""

    def __init__(
        self, watch: StallWatch, rewinds: Counter, topic: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._watch = watch
        self._rewinds = rewinds
        self._topic = topic
        self._clock = clock
        self.offsets = BrokerOffsets()  # as last read
        self._unreadable: tuple[float, float] | None = None  # (since, last told)

    @property
    def read_every_s(self) -> float:
        """How often the broker's offsets are read: several reads within one wait, so that a
        commit the broker took is seen before the wait could end."""
        return min(_OFFSETS_READ_EVERY_S, self._watch.after_s / 3)

    async def read_offsets(self, consumer: ConsumerT) -> None:
        """Read the owned partitions' committed offsets and ends from the broker. Until a read
        succeeds again they are unknown, and a partition whose offset is unknown is not judged
        (its wait goes on). A failure is told at once, then once per wait while reads fail."""
        if not isinstance(consumer, Rewindable):
            return
        owned = [tp for tp in consumer.assignment() if tp.topic == self._topic]
        try:
            self.offsets = await consumer.broker_offsets(owned, self.read_every_s)
        except Exception as exc:  # any failure only leaves the offsets unknown; it is retried
            self.offsets = BrokerOffsets()
            if not consumer.should_stop:  # one cut short by a shutdown is no news
                self._tell_unreadable(exc)
        else:
            self._unreadable = None

    def _tell_unreadable(self, exc: Exception) -> None:
        now = self._clock()
        if self._unreadable is None:
            self._unreadable = (now, now)
        elif now - self._unreadable[1] >= self._watch.after_s:
            self._unreadable = (self._unreadable[0], now)
        else:
            return
        log.warning(
            "%s: committed offsets unreadable for %.0f s (%r); the stall watch cannot judge meanwhile",
            self._topic,
            now - self._unreadable[0],
            exc,
        )

    def check(self, consumer: ConsumerT, not_reading: str | None) -> None:
        """``not_reading``: why the worker does not read its input now (a rebalance, a table
        recovery, a failure), or None while it does; meanwhile nothing is judged stalled."""
        read = self.offsets
        owned = owned_progress(consumer, self._topic, read.committed, read.ends, faust_committed(consumer))
        for progress in owned:  # a series at 0 from the start, so that increase() sees the first
            self._rewinds.labels(self._topic, str(progress.partition))
        if not isinstance(consumer, Rewindable):
            return
        # A partition held back for a full input buffer waits by right while the buffer holds
        # events of any partition (it is one buffer for all); once it holds none, the hold is stale.
        buffered = sum(progress.in_flight for progress in owned)
        judged = []
        for progress in owned:
            tp = TP(self._topic, progress.partition)
            in_flight = buffered if consumer.held_back(tp) else progress.in_flight
            judged.append(replace(progress, in_flight=in_flight, known=tp in read.committed))
        judgement = self._watch.judge(judged, reading=not_reading is None)
        if judgement.not_reading_s is not None:
            log.info(
                "%s: %d records wait behind the committed offsets; the worker has not read for %.0f s: %s",
                self._topic,
                sum(progress.backlog for progress in owned),
                judgement.not_reading_s,
                not_reading,
            )
        for progress in judgement.held:
            log.info(
                "%s[%d]: %d records wait behind the committed offset %s with no commit (or none up to "
                "what the worker committed) for %.0f s, but %d events are in flight (a batch waiting on "
                "Triton or the broker, or a full input buffer): not read again; fetch: %s",
                self._topic,
                progress.partition,
                progress.backlog,
                progress.committed,
                self._watch.after_s,
                progress.in_flight,
                consumer.fetch_state(TP(self._topic, progress.partition)),
            )
        for progress in judgement.stalled:
            committed = progress.committed
            assert committed is not None  # a partition with a backlog has a committed offset
            tp = TP(self._topic, progress.partition)
            log.warning(
                "%s[%d]: %d records past the committed offset %d and no commit (or none up to what "
                "the worker committed) for %.0f s: "
                "reading again from %d (a stalled consumer; records after it may be published twice); "
                "fetch: %s",
                self._topic,
                progress.partition,
                progress.backlog,
                committed,
                self._watch.after_s,
                committed,
                consumer.fetch_state(tp),
            )
            self._rewinds.labels(self._topic, str(progress.partition)).inc()
            consumer.request_rewind(tp, committed)


class Monitor(Service):
    """Runs beside the app in the worker; from its start, so that the heartbeat also beats
    while the windows table is restored (Faust starts its own timers only after that)."""

    def __init__(
        self,
        app: faust.App,
        health: Health,
        lag: ConsumerLag,
        rewinder: StallRewinder | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._app = app
        self._health = health
        self._lag = lag
        self._rewinder = rewinder

    @Service.timer(_INTERVAL_S)
    async def _tick(self) -> None:
        self._health.tick()
        with contextlib.suppress(ConsumerNotStarted):  # the app starts it just after this service
            consumer = self._app.consumer
            ends = self._rewinder.offsets.ends if self._rewinder is not None else {}
            self._lag.update(owned_progress(consumer, self._lag.topic, faust_committed(consumer), ends))
            if self._rewinder is not None:
                self._rewinder.check(consumer, self._not_reading())

    def _not_reading(self) -> str | None:
        if not self._app.flow_control.is_active():
            return "the stream's flow is stopped (a rebalance)"
        return self._health.not_reading()

    @Service.task
    async def _read_offsets(self) -> None:
        rewinder = self._rewinder
        if rewinder is None:
            return
        while not self.should_stop:
            await self.sleep(rewinder.read_every_s)
            with contextlib.suppress(ConsumerNotStarted):
                await rewinder.read_offsets(self._app.consumer)
