"""Scenarios about the input rather than a fault: fuzzed messages among valid events, and a
soak at half the rate one worker sustains (RSS and consumer lag over time, idle users evicted)."""

from __future__ import annotations

import asyncio
import statistics
import time

import orjson

from benchmarks.chaos.fuzz import fuzzed_messages, interleave
from benchmarks.chaos.report import Row
from benchmarks.chaos.rig import Rig, Trial, log, rss_mb
from benchmarks.harness import Servers, drain_rate
from benchmarks.workload import EventSupply, Message
from serving.synthetic import DAY_MS
from tools.worker_process import WorkerProcess

__all__ = ["fuzz", "soak"]

RSS_BAND = 0.10
# The soak's second population starts this many days of event time after the first, which
# then lies idle for longer than the worker's eviction time. The supply's days overlap (a
# user's later sessions run days past the day the user started), so the limit stays well
# above that overlap: active users are not evicted.
_ACTIVE_FROM_DAY = 40
_IDLE_EVICT_DAYS = 20
_WAIT_S = 900.0
_SAMPLE_S = 2.0


def fuzz(rig: Rig) -> Row:
    count = int(rig.size(400, 100_000))
    trial = Trial(rig, "fuzz")
    valid = EventSupply(users=int(rig.size(100, 5000)), seed=rig.seed + 1).take(int(rig.size(1000, 50_000)))
    bases = [orjson.loads(message.value) for message in valid[:1000]]
    fuzzed = list(fuzzed_messages(bases, count, seed=rig.seed))
    messages = [
        Message("", "", key or b"", value, 0)
        for key, value in interleave([(m.key, m.value) for m in valid], fuzzed, seed=rig.seed)
    ]
    row = Row(
        "1 fuzzed messages",
        f"{len(valid):,} valid events + {count:,} fuzzed, one backlog",
        f"seed {rig.seed}: hostile kinds, random bytes, field and byte mutations of valid events",
    )
    worker = trial.start_worker()
    with trial.abandoned_on_error():
        worker.wait_assigned()
        trial.produce(messages)
        log(f"1: {len(messages):,} messages sent")
        outputs = trial.collect(row, _WAIT_S)
    accounting = outputs.accounting
    row.notes.append(f"{accounting.dead_lettered:,} dead-lettered, {accounting.processed:,} processed")
    return trial.finish(row, outputs)


def _lag(worker: WorkerProcess, started: float, rate: float, total: int, consumed_before: float) -> float:
    offered = min(total, rate * (time.monotonic() - started))
    return max(0.0, offered - (worker.metrics().get("nextaction_events_consumed_total", 0) - consumed_before))


def soak(rig: Rig) -> Row:
    duration_s = rig.size(20, 600)
    users = int(rig.size(2000, 20_000))
    trial = Trial(rig, "soak", user_idle_evict_s=_IDLE_EVICT_DAYS * DAY_MS / 1000)
    idle = EventSupply(users=users, seed=rig.seed + 80, prefix="idle-")
    active = EventSupply(users=users, seed=rig.seed + 8, first_chunk=_ACTIVE_FROM_DAY)
    row = Row("8 soak", "-", "none")
    worker = trial.start_worker()
    with trial.abandoned_on_error():
        worker.wait_assigned()
        servers = Servers(
            trial.settings.triton_grpc_url, rig.workdir, trial.settings, trial.settings.kafka_bootstrap
        )
        # Users who then go idle for good; a backlog that fills the active users' windows; one
        # that measures (a rate drained over near-empty windows is more than the worker
        # sustains once they fill).
        idle_users: set[str] = set()
        for supply in (idle, active, active):
            backlog = supply.take(int(rig.size(5_000, 100_000)))
            maximum = asyncio.run(drain_rate(servers, trial.settings, [worker.metrics_url], backlog))
            trial.sent.update(message.partition for message in backlog)
            if supply is idle:
                idle_users = {message.user_id for message in backlog}
        rate = maximum / 2
        log(
            f"8: active users' second backlog drained at {maximum:,.0f}/s; "
            f"soaking at {rate:,.0f}/s for {duration_s:g} s"
        )
        consumed_before = worker.metrics().get("nextaction_events_consumed_total", 0)
        messages = active.take(int(rate * duration_s))
        load = trial.offer(messages, rate)
        started = time.monotonic()
        samples: list[tuple[float, float, float]] = []  # (seconds in, RSS MB, lag events)
        while time.monotonic() - started < duration_s:
            time.sleep(_SAMPLE_S)
            assert worker.process is not None
            rss = rss_mb(worker.process.pid) or 0.0
            samples.append(
                (time.monotonic() - started, rss, _lag(worker, started, rate, len(messages), consumed_before))
            )
        load.join()
        outputs = trial.collect(row, _WAIT_S)
        metrics = worker.metrics()
    row.load = (
        f"{duration_s:g} s at {rate:,.0f}/s (half the {maximum:,.0f}/s drain rate of the active users' "
        f"second backlog), {len(idle_users):,} users idle since {_ACTIVE_FROM_DAY} days before"
    )
    _judge_soak(row, samples, duration_s, rate)
    evicted, stored = (
        metrics.get("nextaction_windows_evicted_total", 0),
        metrics.get("nextaction_windows_stored", 0),
    )
    # Which windows went is checked against the replay, which evicts as the worker does; active
    # users whose events fell behind the idle limit in event time are evicted too.
    row.require(
        evicted >= len(idle_users),
        f"{evicted:,.0f} windows evicted, fewer than the {len(idle_users):,} users gone idle",
    )
    row.notes.append(
        f"{evicted:,.0f} windows evicted, {len(idle_users):,} users gone idle among them; "
        f"{stored:,.0f} windows stored at the end"
    )
    return trial.finish(row, outputs)


def _judge_soak(row: Row, samples: list[tuple[float, float, float]], duration_s: float, rate: float) -> None:
    """After a warm-up of the first quarter: RSS within the band around its value then, and the
    lag of the last half no higher on average than that of the first half plus half a second of
    events."""
    settled = [sample for sample in samples if sample[0] >= duration_s / 4]
    if len(settled) < 4:
        row.expect(False, "too few samples to judge RSS and lag")
        return
    base = settled[0][1]
    rss = [sample[1] for sample in settled]
    row.expect(
        all(abs(value - base) <= RSS_BAND * base for value in rss),
        f"RSS left +-{RSS_BAND:.0%} of {base:,.0f} MB ({min(rss):,.0f}-{max(rss):,.0f} MB)",
    )
    half = len(settled) // 2
    early, late = statistics.mean(s[2] for s in settled[:half]), statistics.mean(s[2] for s in settled[half:])
    row.expect(late <= early + rate * 0.5, f"lag grew: {early:,.0f} -> {late:,.0f} events on average")
    row.notes.append(
        f"RSS {min(rss):,.0f}-{max(rss):,.0f} MB after warm-up; lag {early:,.0f} -> {late:,.0f} events"
    )
