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
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["PartitionProgress", "StallWatch"]


@dataclass(frozen=True)
class PartitionProgress:
    """An owned input partition as the consumer knows it: the group's committed offset (the
    next record to process; None before the group's first commit), the partition's end as
    last fetched (None before the first fetch), and its events taken into a batch and not yet
    acknowledged."""

    partition: int
    committed: int | None
    highwater: int | None
    in_flight: int = 0

    @property
    def backlog(self) -> int:
        if self.committed is None or self.highwater is None:
            return 0  # unknown: a partition never committed is rewound on assignment instead
        return max(0, self.highwater - self.committed)


class StallWatch:
    """Says which partitions have had a backlog and the same committed offset for ``after_s``
    seconds, once per ``after_s`` while they stay so. A partition is reported only at a moment
    when none of its events is in flight: a batch that waits (on the broker, or on Triton with
    the fallback off) holds its commit back by right, and has an alert of its own."""

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self._clock = clock
        # partition -> (committed offset, since when the backlog has waited at it)
        self._waiting: dict[int, tuple[int | None, float]] = {}

    def reset(self) -> None:
        """Forget every wait: called while the worker is not reading (rebalance, recovery)."""
        self._waiting.clear()

    def stalled(self, partitions: Iterable[PartitionProgress]) -> list[PartitionProgress]:
        now = self._clock()
        waiting: dict[int, tuple[int | None, float]] = {}
        stalled: list[PartitionProgress] = []
        for progress in partitions:
            if not progress.backlog:
                continue
            committed, since = self._waiting.get(progress.partition, (progress.committed, now))
            if committed != progress.committed:
                since = now
            elif now - since >= self.after_s and not progress.in_flight:
                stalled.append(progress)
                since = now
            waiting[progress.partition] = (progress.committed, since)
        self._waiting = waiting
        return stalled
