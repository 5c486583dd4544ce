"""Input partitions whose backlog nobody reads: records past the group's committed offset and,
for a while, no commit or none up to what Faust believes it committed, although this worker owns
the partition and its flow runs.

Faust's consumer skips every record below a partition's read offset, so a record dropped
between its delivery and its processing (a rebalance or a table recovery racing the fetcher:
docs/2026-11-29-reliability.md) is never read again. The commit cannot pass it, and the worker
sits idle over a backlog until the next rebalance. Two such paths are fixed at their cause;
this finds any other, and so a commit that stops or creeps short of what Faust believes it
committed, and the monitor then reads the partition again from its committed offset
(:class:`stream.monitor.Monitor`). Reading again is safe: the windows ignore an event
they already hold, and every output record carries a watermark for consumers that drop replays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from faust.types import TP

__all__ = ["BrokerOffsets", "Judgement", "PartitionProgress", "StallWatch", "later"]


@dataclass(frozen=True)
class BrokerOffsets:
    """What the broker last answered for the owned partitions: the group's committed offsets
    (None: no commit yet) and the partitions' ends. A partition absent is unknown."""

    committed: Mapping[TP, int | None] = field(default_factory=dict)
    ends: Mapping[TP, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PartitionProgress:
    """An owned input partition: the group's committed offset (the next record to process;
    None before the group's first commit), the partition's end (None while unknown), its events
    taken into a batch and not yet acknowledged, the offset Faust believes committed (what it
    last sent, whatever the broker did with it), and whether the broker's offsets were read
    (while they cannot be, the partition's wait stands still)."""

    partition: int
    committed: int | None
    highwater: int | None
    in_flight: int = 0
    believed: int | None = None
    known: bool = True

    @property
    def backlog(self) -> int:
        if self.committed is None or self.highwater is None:
            return 0  # unknown: a partition never committed is rewound on assignment instead
        return max(0, self.highwater - self.committed)

    @property
    def unconfirmed(self) -> int | None:
        """The offset Faust believes committed where the broker holds less (else None)."""
        if self.believed is None or (self.committed is not None and self.believed <= self.committed):
            return None
        return self.believed


def later(first: int | None, second: int | None) -> int | None:
    """The greater offset of two, either of which may be unknown."""
    return first if second is None else second if first is None else max(first, second)


class Judgement(NamedTuple):
    """What one look found: partitions to read again now; partitions that waited as long but
    have events in flight (once per wait); and, once per ``after_s`` while the worker does not
    read over a backlog, for how long it has not (counted from the first look that saw both)."""

    stalled: list[PartitionProgress]
    held: list[PartitionProgress]
    not_reading_s: float | None


@dataclass(frozen=True)
class _Wait:
    """A backlogged partition's two waits: for the committed offset to move, and for it to
    reach the offset Faust believed committed when that wait began (``due``). Both count only
    the time the broker's offsets were known."""

    committed: int | None
    committed_since: float
    due: int | None
    due_since: float
    seen_at: float
    told: bool = False  # that it is held

    @classmethod
    def start(cls, progress: PartitionProgress, now: float) -> _Wait:
        return cls(progress.committed, now, progress.unconfirmed, now, now)

    def seen(self, progress: PartitionProgress, now: float) -> _Wait:
        committed_since = now if progress.committed != self.committed else self.committed_since
        due, due_since = self.due, self.due_since
        if due is None or (progress.committed is not None and progress.committed >= due):
            due, due_since = progress.unconfirmed, now
        return _Wait(progress.committed, committed_since, due, due_since, now, self.told)

    def unseen(self, now: float) -> _Wait:
        """The offsets were not known: the time since the last look does not count."""
        paused = now - self.seen_at
        return replace(
            self,
            committed_since=self.committed_since + paused,
            due_since=self.due_since + paused,
            seen_at=now,
        )

    def waited_s(self, now: float) -> float:
        """The longer of the two waits (the second counts only while something is due)."""
        return now - (self.committed_since if self.due is None else min(self.committed_since, self.due_since))


class StallWatch:
    """Says which partitions have had a backlog for ``after_s`` seconds while the committed
    offset stayed the same (records lost before processing: the commit cannot pass them; a
    partition left out of the fetch), or stayed short of the offset Faust believed committed
    when the wait began (a commit that creeps, or one that lands nowhere), once per
    ``after_s`` while they stay so. Time while the broker's offsets cannot be read does not
    count. A partition is reported only at a moment when none of its
    events is in flight: a batch that waits (on the broker, or on Triton with the fallback off)
    holds its commit back by right, and has an alert of its own. While the worker is not
    reading (a rebalance, a table recovery) nothing waits: the wait starts when it reads again."""

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self._clock = clock
        self._waiting: dict[int, _Wait] = {}  # by partition
        self._not_reading: tuple[float, float] | None = None  # (since, last told)

    def judge(self, partitions: Iterable[PartitionProgress], reading: bool) -> Judgement:
        now = self._clock()
        partitions = list(partitions)
        backlogged = [progress for progress in partitions if progress.known and progress.backlog]
        if not reading:
            self._waiting.clear()
            if not backlogged:
                self._not_reading = None
                return Judgement([], [], None)
            return Judgement([], [], self._not_reading_told(now))
        self._not_reading = None
        waiting: dict[int, _Wait] = {}
        stalled: list[PartitionProgress] = []
        held: list[PartitionProgress] = []
        for progress in partitions:
            wait = self._waiting.get(progress.partition)
            if not progress.known:  # the broker's offsets unread: the wait stands still
                if wait is not None:
                    waiting[progress.partition] = wait.unseen(now)
                continue
            if not progress.backlog:
                continue
            wait = _Wait.start(progress, now) if wait is None else wait.seen(progress, now)
            if wait.waited_s(now) < self.after_s:
                wait = replace(wait, told=False)  # a new wait: its hold is told anew
            elif not progress.in_flight:
                stalled.append(progress)
                # Read again from the committed offset, where Faust's belief is set back to.
                wait = _Wait(progress.committed, now, None, now, now)
            elif not wait.told:
                held.append(progress)
                wait = replace(wait, told=True)
            waiting[progress.partition] = wait
        self._waiting = waiting
        return Judgement(stalled, held, None)

    def _not_reading_told(self, now: float) -> float | None:
        since, told = self._not_reading or (now, now)
        self._not_reading = (since, told)
        if now - told < self.after_s:
            return None
        self._not_reading = (since, now)
        return now - since
