"""The stall watch: which owned partitions have waited with a backlog and no commit, and the
rewind the monitor then asks of the consumer."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP

from stream.metrics import StreamMetrics
from stream.monitor import StallRewinder, owned_progress
from stream.stall_watch import BrokerOffsets, Judgement, PartitionProgress, StallWatch
from tests.stream.test_monitor import Consumer as MonitoredConsumer
from tests.stream.test_monitor import by_partition

pytestmark = pytest.mark.unit

AFTER_S = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(partition: int, committed: int | None, highwater: int | None) -> PartitionProgress:
    return PartitionProgress(partition, committed, highwater)


def stalled_partitions(watch: StallWatch, *owned: PartitionProgress) -> list[int]:
    return [p.partition for p in watch.judge(owned, reading=True).stalled]


def test_a_backlog_waiting_at_the_same_commit_is_reported_after_the_wait_and_then_once_per_wait() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    assert stalled_partitions(watch, progress(0, 609, 1600)) == []
    clock.now += AFTER_S - 1
    assert stalled_partitions(watch, progress(0, 609, 1600)) == []
    clock.now += 1
    assert stalled_partitions(watch, progress(0, 609, 1600)) == [0]
    clock.now += AFTER_S / 2
    assert stalled_partitions(watch, progress(0, 609, 1700)) == []  # reported: the wait starts again
    clock.now += AFTER_S / 2
    assert stalled_partitions(watch, progress(0, 609, 1700)) == [0]


def test_a_moving_commit_restarts_the_wait_and_a_partition_without_backlog_is_never_stalled() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    busy, idle, never_committed, never_fetched = (
        progress(0, 100, 5000),
        progress(1, 700, 700),
        progress(2, None, 900),
        progress(3, 50, None),
    )
    assert stalled_partitions(watch, busy, idle, never_committed, never_fetched) == []
    for commit in range(200, 2000, 100):  # a slow worker far behind, committing as it goes
        clock.now += AFTER_S - 1
        busy = progress(0, commit, 5000)
        assert stalled_partitions(watch, busy, idle, never_committed, never_fetched) == []
    clock.now += AFTER_S
    assert stalled_partitions(watch, busy, idle, never_committed, never_fetched) == [0]


def test_a_commit_that_creeps_short_of_what_the_worker_acknowledged_is_stalled_after_the_wait() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    # Everything to the end acknowledged; the group's offset moves a few records now and then.
    assert stalled_partitions(watch, PartitionProgress(0, 3556, 4800, believed=4800)) == []
    for committed in (3568, 3580, 3600, 3621):
        clock.now += AFTER_S / 5
        assert stalled_partitions(watch, PartitionProgress(0, committed, 4800, believed=4800)) == []
    clock.now += AFTER_S / 5
    assert stalled_partitions(watch, PartitionProgress(0, 3621, 4800, believed=4800)) == [0]


def test_a_commit_that_creeps_while_the_input_flows_is_stalled_after_the_wait() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    for step in range(5):  # the worker acknowledges 300 records a step; the commit moves 5
        creeping = PartitionProgress(0, 3556 + 5 * step, 5000 + 300 * step, believed=4800 + 300 * step)
        assert stalled_partitions(watch, creeping) == []
        clock.now += AFTER_S / 5
    assert stalled_partitions(watch, PartitionProgress(0, 3581, 6500, believed=6300)) == [0]


def test_a_worker_whose_commits_follow_its_acknowledgements_is_never_stalled() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    for step in range(600):  # far behind, acknowledging as it goes; each commit a few seconds late
        working = PartitionProgress(0, 100 * (step - step % 3), 1_000_000, believed=100 * step + 50)
        assert stalled_partitions(watch, working) == []
        clock.now += 1


def test_records_lost_under_load_stall_the_commit_while_the_worker_acknowledges_on() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    for step in range(int(AFTER_S)):  # the commit waits at 609 for records the worker never got
        working = PartitionProgress(0, 609, 2000 + step, believed=1900 + step)
        assert stalled_partitions(watch, working) == []
        clock.now += 1
    assert stalled_partitions(watch, PartitionProgress(0, 609, 2060, believed=1960)) == [0]


def test_a_partition_read_again_is_not_stalled_again_while_the_worker_works_through_it() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    watch.judge([PartitionProgress(0, 3621, 4800, believed=4800)], reading=True)
    clock.now += AFTER_S
    assert stalled_partitions(watch, PartitionProgress(0, 3621, 4800, believed=4800)) == [0]
    # Read again from 3621, more slowly than the wait: acknowledged and committed as it goes.
    for done in range(3621, 4800, 100):
        clock.now += AFTER_S / 4
        assert stalled_partitions(watch, PartitionProgress(0, done, 4800, believed=done + 50)) == []


def test_a_partition_is_reported_only_at_a_moment_when_none_of_its_events_is_in_flight() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    watch.judge([progress(0, 609, 1600)], reading=True)
    clock.now += AFTER_S
    waiting_batch = PartitionProgress(0, 609, 1600, in_flight=16)  # e.g. Triton out, fallback off
    assert watch.judge([waiting_batch], reading=True) == Judgement([], [waiting_batch], None)
    clock.now += 1
    assert watch.judge([waiting_batch], reading=True) == Judgement([], [], None)  # told once per wait
    clock.now += 1
    assert stalled_partitions(watch, progress(0, 609, 1600)) == [0]  # the wait kept running


def test_a_held_partition_whose_commit_creeps_is_told_once_per_wait() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)

    def held_at(committed: int) -> PartitionProgress:
        return PartitionProgress(0, committed, 4800, in_flight=16, believed=4800)

    watch.judge([held_at(3556)], reading=True)
    clock.now += AFTER_S
    assert watch.judge([held_at(3556)], reading=True).held == [held_at(3556)]
    for committed in (3568, 3580, 3600):  # each move restarts one wait; the other goes on
        clock.now += 10
        assert watch.judge([held_at(committed)], reading=True).held == []


def test_in_flight_events_and_faust_s_belief_are_told_per_owned_partition() -> None:
    consumer = MonitoredConsumer({TP("events", 0): 100, TP("events", 1): 50})
    consumer.unacked = [
        SimpleNamespace(topic="events", partition=0, acked=False),
        SimpleNamespace(topic="events", partition=0, acked=False),
        # Acknowledged below what Faust believed committed: Faust never takes it off the set.
        SimpleNamespace(topic="events", partition=1, acked=True),
        SimpleNamespace(topic="other", partition=1, acked=False),
    ]
    owned = owned_progress(cast(Any, consumer), "events", {TP("events", 0): 90}, {}, {TP("events", 0): 95})
    assert owned == [
        PartitionProgress(0, 90, 100, in_flight=2, believed=95),
        PartitionProgress(1, None, 50, in_flight=0),
    ]


def test_a_time_not_reading_or_a_revocation_forgets_the_wait() -> None:
    clock = Clock()
    watch = StallWatch(AFTER_S, clock)
    watch.judge([progress(0, 10, 20), progress(1, 10, 20)], reading=True)
    clock.now += AFTER_S / 2
    watch.judge([progress(1, 10, 20)], reading=True)  # partition 0 revoked
    watch.judge([progress(1, 10, 20)], reading=False)  # a rebalance
    clock.now += AFTER_S / 2
    assert stalled_partitions(watch, progress(0, 10, 20), progress(1, 10, 20)) == []
    clock.now += AFTER_S
    assert stalled_partitions(watch, progress(0, 10, 20), progress(1, 10, 20)) == [0, 1]


class Consumer(MonitoredConsumer):
    """A consumer that reads the group's committed offsets from a broker and rewinds. The
    broker's partition ends are the consumer's highwaters unless ``ends`` says otherwise."""

    def __init__(
        self,
        highwaters: dict[TP, int | None],
        believed: dict[TP, int],
        broker: dict[TP, int],
        ends: dict[TP, int] | None = None,
    ) -> None:
        super().__init__(highwaters, committed=believed)
        self.broker: dict[TP, int] | BaseException = broker
        fetched = {tp: end for tp, end in highwaters.items() if end is not None}
        self.ends = fetched if ends is None else ends
        self.rewinds: list[tuple[TP, int]] = []
        self.should_stop = False
        self.held: set[TP] = set()  # held back for a full input buffer

    async def broker_offsets(self, partitions: Iterable[TP], timeout_s: float) -> BrokerOffsets:
        if isinstance(self.broker, BaseException):
            raise self.broker
        owned = list(partitions)
        return BrokerOffsets(
            {tp: self.broker.get(tp) for tp in owned}, {tp: self.ends[tp] for tp in owned if tp in self.ends}
        )

    def fetch_state(self, tp: TP) -> str:
        return f"fetched, highwater {self.highwater(tp)} as last fetched"

    def held_back(self, tp: TP) -> bool:
        return tp in self.held

    def request_rewind(self, tp: TP, offset: int) -> None:
        self.rewinds.append((tp, offset))


def rewinder_over(clock: Clock, metrics: StreamMetrics) -> StallRewinder:
    return StallRewinder(StallWatch(AFTER_S, clock), metrics.partition_rewinds, "events", clock)


async def watching(consumer: Consumer, clock: Clock, metrics: StreamMetrics) -> StallRewinder:
    """A rewinder over ``consumer`` that has read the broker's offsets and taken a first look."""
    rewinder = rewinder_over(clock, metrics)
    await rewinder.read_offsets(cast(Any, consumer))
    rewinder.check(cast(Any, consumer), not_reading=None)
    return rewinder


def rewinds_counted(metrics: StreamMetrics) -> dict[str, float]:
    return by_partition(metrics, "nextaction_partition_rewinds_total")


P0, P1 = TP("events", 0), TP("events", 1)


async def test_the_rewinder_reads_a_stalled_partition_again_from_the_offset_the_broker_holds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = Clock(), StreamMetrics.create()
    # Faust believes both partitions committed to their end; the broker never got p0's commit.
    consumer = Consumer({P0: 1600, P1: 300}, believed={P0: 1600, P1: 300}, broker={P0: 609, P1: 300})
    rewinder = await watching(consumer, clock, metrics)
    assert rewinds_counted(metrics) == {"0": 0, "1": 0}  # from the start: increase() sees the first
    clock.now += AFTER_S
    with caplog.at_level(logging.WARNING, logger="stream.monitor"):
        rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == [(P0, 609)]
    assert rewinds_counted(metrics) == {"0": 1, "1": 0}
    assert "events[0]: 991 records past the committed offset 609" in caplog.text


async def test_a_broker_offset_that_creeps_short_of_faust_s_belief_is_read_again_after_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = Clock(), StreamMetrics.create()
    # Faust believes the partition committed to its end; what reaches the broker creeps.
    consumer = Consumer({P0: 4800}, believed={P0: 4800}, broker={P0: 3556})
    rewinder = await watching(consumer, clock, metrics)
    for committed in (3568, 3580, 3600, 3621):
        clock.now += AFTER_S / 5
        consumer.broker = {P0: committed}
        await rewinder.read_offsets(cast(Any, consumer))
        rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == []
    clock.now += AFTER_S / 5
    with caplog.at_level(logging.WARNING, logger="stream.monitor"):
        rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == [(P0, 3621)]
    assert "events[0]: 1179 records past the committed offset 3621" in caplog.text


async def test_a_commit_the_broker_took_restarts_the_wait() -> None:
    clock, metrics = Clock(), StreamMetrics.create()
    consumer = Consumer({P0: 1600}, believed={P0: 700}, broker={P0: 609})
    rewinder = await watching(consumer, clock, metrics)
    clock.now += AFTER_S - 1
    consumer.broker = {P0: 700}
    await rewinder.read_offsets(cast(Any, consumer))
    rewinder.check(cast(Any, consumer), not_reading=None)
    clock.now += AFTER_S - 1
    rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == []
    clock.now += 1
    rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == [(P0, 700)]


async def test_while_the_committed_offsets_cannot_be_read_the_wait_stands_still(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = Clock(), StreamMetrics.create()
    consumer = Consumer({P0: 1600}, believed={P0: 1600}, broker={P0: 609})
    rewinder = await watching(consumer, clock, metrics)
    clock.now += AFTER_S / 2
    rewinder.check(cast(Any, consumer), not_reading=None)
    consumer.broker = ConnectionError("broker down")
    with caplog.at_level(logging.WARNING, logger="stream.monitor"):
        for _ in range(13):  # 65 s of reads every 5 s: told at once and once the wait is over
            clock.now += 5
            await rewinder.read_offsets(cast(Any, consumer))
            rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == []  # nothing known, nothing judged
    told = [record.getMessage() for record in caplog.records]
    assert told == [
        f"events: committed offsets unreadable for {seconds} s (ConnectionError('broker down')); "
        "the stall watch cannot judge meanwhile"
        for seconds in (0, 60)
    ]
    consumer.broker = {P0: 609}  # where it was: the wait goes on from its 30 s, neither over nor anew
    await rewinder.read_offsets(cast(Any, consumer))
    clock.now += AFTER_S / 2 - 1
    rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == []
    clock.now += 1
    rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == [(P0, 609)]


async def test_a_read_that_fails_because_the_consumer_stops_is_not_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = StreamMetrics.create()
    consumer = Consumer({P0: 1600}, believed={P0: 1600}, broker={P0: 609})
    rewinder = rewinder_over(Clock(), metrics)
    consumer.should_stop = True
    consumer.broker = RuntimeError("Event loop is closed")
    with caplog.at_level(logging.WARNING, logger="stream.monitor"):
        await rewinder.read_offsets(cast(Any, consumer))
    assert "committed offsets unreadable" not in caplog.text


async def test_the_rewinder_judges_nothing_while_the_worker_is_not_reading() -> None:
    clock, metrics = Clock(), StreamMetrics.create()
    consumer = Consumer({P0: 1600}, believed={P0: 1600}, broker={P0: 609})
    rewinder = rewinder_over(clock, metrics)
    await rewinder.read_offsets(cast(Any, consumer))
    for _ in range(5):  # a long table recovery: the wait never starts
        rewinder.check(cast(Any, consumer), not_reading="rebalancing")
        clock.now += AFTER_S
    rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == []
    clock.now += AFTER_S
    rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == [(P0, 609)]


async def test_a_partition_the_consumer_no_longer_fetches_is_judged_by_the_end_the_broker_gives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = Clock(), StreamMetrics.create()
    # The last fetch saw the partition end at 2045, everything to there is committed, and no
    # fetch came since: by the consumer's own view there is no backlog at all.
    consumer = Consumer({P0: 2045}, believed={P0: 2045}, broker={P0: 2045}, ends={P0: 3200})
    rewinder = await watching(consumer, clock, metrics)
    clock.now += AFTER_S
    with caplog.at_level(logging.WARNING, logger="stream.monitor"):
        rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == [(P0, 2045)]
    assert "events[0]: 1155 records past the committed offset 2045" in caplog.text
    assert "fetch: fetched, highwater 2045 as last fetched" in caplog.text


async def test_a_wait_not_followed_by_a_rewind_says_why_once(caplog: pytest.LogCaptureFixture) -> None:
    clock, metrics = Clock(), StreamMetrics.create()
    consumer = Consumer({P0: 1600}, believed={P0: 609}, broker={P0: 609})
    consumer.unacked = [SimpleNamespace(topic="events", partition=0, acked=False)] * 16
    rewinder = rewinder_over(clock, metrics)
    await rewinder.read_offsets(cast(Any, consumer))
    with caplog.at_level(logging.INFO, logger="stream.monitor"):
        rewinder.check(cast(Any, consumer), not_reading=None)
        for _ in range(3):  # a batch waits on Triton past the wait
            clock.now += AFTER_S
            rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == []
    assert caplog.text.count("but 16 events are in flight") == 1

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stream.monitor"):
        for _ in range(7):  # a table recovery of three waits and a half
            rewinder.check(cast(Any, consumer), not_reading="rebalancing, restoring the windows table")
            clock.now += AFTER_S / 2
    assert consumer.rewinds == []
    told = [record.getMessage() for record in caplog.records]
    assert told == [
        f"events: 991 records wait behind the committed offsets; the worker has not read for {seconds} s: "
        "rebalancing, restoring the windows table"
        for seconds in (60, 120, 180)
    ]


async def test_a_partition_held_back_for_a_full_buffer_waits_while_the_buffer_holds_any_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, metrics = Clock(), StreamMetrics.create()
    consumer = Consumer({P0: 1600, P1: 900}, believed={P0: 609, P1: 500}, broker={P0: 609, P1: 500})
    consumer.held = {P0}  # out of the fetch while partition 1's events fill the one buffer
    consumer.unacked = [SimpleNamespace(topic="events", partition=1, acked=False)] * 40
    rewinder = await watching(consumer, clock, metrics)
    clock.now += AFTER_S
    with caplog.at_level(logging.INFO, logger="stream.monitor"):
        rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == []
    assert "events[0]: 991 records wait behind the committed offset 609" in caplog.text
    assert "but 40 events are in flight" in caplog.text
    consumer.unacked = []  # the buffer emptied, yet the partition was never put back
    clock.now += 1
    rewinder.check(cast(Any, consumer), not_reading=None)
    assert consumer.rewinds == [(P0, 609), (P1, 500)]
