"""Input partitions whose backlog nobody reads: records past the group's committed offset and
no commit for a while, although this worker owns the partition and its flow runs.

Faust's consumer skips every record below a partition's read offset, so a record dropped
between its delivery and its processing (a rebalance or a table recovery racing the fetcher:
docs/2026-11-29-reliability.md) is never read again. The commit cannot pass it, and the worker
sits idle over a backlog until the next rebalance. Two such paths are fixed at their cause;
this finds any other, and the monitor then reads the partition again from its committed
offset (:class:`stream.monitor.Monitor`). Reading again is safe: the windows ignore an event
they already hold, and every output record carries a watermark for consumers that drop replays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from faust.types import TP

__all__ = ["BrokerOffsets", "Judgement", "PartitionProgress", "StallWatch"]


@dataclass(frozen=True)
class BrokerOffsets:
    """What the broker last answered for the owned partitions: the group's committed offsets
    (None: no commit yet) and the partitions' ends. A partition absent is unknown."""

    committed: Mapping[TP, int | None] = field(default_factory=dict)
    ends: Mapping[TP, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PartitionProgress:
    """An owned input partition: the group's committed offset (the next record to process;
    None before the group's first commit), the partition's end (None while unknown), and its
    events taken into a batch and not yet acknowledged."""

    partition: int
    committed: int | None
    highwater: int | None
    in_flight: int = 0

    @property
    def backlog(self) -> int:
        if self.committed is None or self.highwater is None:
            return 0  # unknown: a partition never committed is rewound on assignment instead
        return max(0, self.highwater - self.committed)


class Judgement(NamedTuple):
    """What one look found: partitions to read again now; partitions that waited as long but
    have events in flight (once per wait); and, once per ``after_s`` while the worker does not
    read over a backlog, for how long it has not (counted from the first look that saw both)."""

    stalled: list[PartitionProgress]
    held: list[PartitionProgress]
    not_reading_s: float | None


class StallWatch:
    """Says which partitions have had a backlog and the same committed offset for ``after_s``
    seconds, once per ``after_s`` while they stay so. A partition is reported only at a moment
    when none of its events is in flight: a batch that waits (on the broker, or on Triton with
    the fallback off) holds its commit back by right, and has an alert of its own. While the
    worker is not reading (a rebalance, a table recovery) nothing waits: the wait starts when
    it reads again."""

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self._clock = clock
        # partition -> (committed offset, since when the backlog has waited at it, held told)
        self._waiting: dict[int, tuple[int | None, float, bool]] = {}
        self._not_reading: tuple[float, float] | None = None  # (since, last told)

    def judge(self, partitions: Iterable[PartitionProgress], reading: bool) -> Judgement:
        now = self._clock()
        backlogged = [progress for progress in partitions if progress.backlog]
        if not reading:
            self._waiting.clear()
            if not backlogged:
                self._not_reading = None
                return Judgement([], [], None)
            return Judgement([], [], self._not_reading_told(now))
        self._not_reading = None
        waiting: dict[int, tuple[int | None, float, bool]] = {}
        stalled: list[PartitionProgress] = []
        held: list[PartitionProgress] = []
        for progress in backlogged:
            committed, since, told = self._waiting.get(progress.partition, (progress.committed, now, False))
            if committed != progress.committed:
                since, told = now, False
            elif now - since >= self.after_s:
                if not progress.in_flight:
                    stalled.append(progress)
                    since, told = now, False
                elif not told:
                    held.append(progress)
                    told = True
            waiting[progress.partition] = (progress.committed, since, told)
        self._waiting = waiting
        return Judgement(stalled, held, None)

    def _not_reading_told(self, now: float) -> float | None:
        since, told = self._not_reading or (now, now)
        self._not_reading = (since, told)
        if now - told < self.after_s:
            return None
        self._not_reading = (since, now)
        return now - since
