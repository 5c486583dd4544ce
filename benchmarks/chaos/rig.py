"""The test bench of the fault-injection run: shared servers, and per scenario a ``Trial``
with topics and a consumer group of its own, its workers (child processes it can kill), load
in the background, peak RSS of its workers, and the accounting of what it read back.

Longer than 300 lines because a trial's workers, load, RSS sampling and read-back all work on
its state (topics, group, what was sent, which ends were injected): apart, they would pass it
all around."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka.errors import KafkaTimeoutError

from benchmarks.chaos.accounting import (
    Accounting,
    InputMessage,
    OutputRecord,
    account,
    expected_windows,
    window_mismatches,
)
from benchmarks.chaos.report import Row
from benchmarks.load import Producer
from benchmarks.workload import Message
from stream.admin import ensure_topics
from stream.kafka_security import KafkaSecurity
from stream.settings import Settings
from stream.shutdown import EXIT_SHUTDOWN_TIMED_OUT
from tools.embedded import EmbeddedBroker, EmbeddedTriton
from tools.polling import wait_until
from tools.topic_reader import committed_offsets, read_until_idle
from tools.worker_process import WorkerProcess

__all__ = ["BackgroundLoad", "Outputs", "Rig", "Trial", "log", "rss_mb"]

_CLEAN_EXITS = (0, EXIT_SHUTDOWN_TIMED_OUT)
_RSS_INTERVAL_S = 0.5
_REWIND_WARNING = "records past the committed offset"  # stream.monitor's warning
_SLOW_CATCH_UP_S = 30.0  # against a few seconds usually: what the workers were doing is noted
_SLOW_READ_S = 5.0
_READ_TIMEOUT_S = 15.0  # a read that hangs is given up and made again, within the wait's limit


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Rig:
    """What every scenario shares: the run's size, its directory, a broker and a Triton."""

    workdir: Path
    quick: bool
    seed: int
    broker: EmbeddedBroker
    triton: EmbeddedTriton
    model_repository: Path
    checkpoint: Path | None
    model_name: str = "nextaction"

    def size(self, quick: float, full: float) -> float:
        return quick if self.quick else full

    def rng(self, scenario: int) -> random.Random:
        return random.Random(self.seed * 1000 + scenario)


def rss_mb(pid: int) -> float | None:
    """The resident set of process ``pid`` in MB; None once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class BackgroundLoad:
    """Messages offered at a rate from a thread (the producer of :mod:`benchmarks.load`)."""

    def __init__(self, trial: Trial, messages: Sequence[Message], rate: float) -> None:
        self._trial, self._messages, self.rate = trial, messages, rate
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._offer())
        except BaseException as exc:  # reported by join(), in the scenario's thread
            self.error = exc

    async def _offer(self) -> None:
        async with Producer(
            self._trial.settings.kafka_bootstrap, self._trial.settings.topic_events
        ) as producer:
            await producer.offer(self._messages, self.rate)
        self._trial.sent.update(message.partition for message in self._messages)

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the load could not be sent: {self.error!r}") from self.error


@dataclass(frozen=True)
class Outputs:
    accounting: Accounting
    recommendations: list[dict[str, Any]]
    window_mismatches: list[str]


class Trial:
    """One scenario's pipeline: fresh topics and group ``chaos-<name>`` on ``bootstrap``."""

    def __init__(
        self,
        rig: Rig,
        name: str,
        *,
        bootstrap: str = "",
        triton_url: str = "",
        **settings: Any,
    ) -> None:
        """``settings`` override the worker's."""
        self.rig = rig
        self.overrides: dict[str, Any] = {
            "kafka_bootstrap": bootstrap or rig.broker.bootstrap,
            "kafka_broker_kind": "tansu",
            "triton_grpc_url": triton_url or rig.triton.grpc_url,
            "app_id": f"chaos-{name}",
            "topic_events": f"chaos-{name}.events",
            "topic_recommendations": f"chaos-{name}.recommendations",
            "topic_dead_letter": f"chaos-{name}.dlq",
            "batch_max_wait_ms": 30,
            **settings,
        }
        self.settings = Settings(**self.overrides)
        ensure_topics(self.settings.kafka_bootstrap, self.settings)
        self.name = name
        self.sent: Counter[int] = Counter()  # messages acknowledged by the broker, per partition
        self.workers: list[WorkerProcess] = []
        self.injected: set[int] = set()  # pids whose end was a fault we injected
        self.crashes: list[str] = []
        self.peak_rss_mb = 0.0
        self._watching = True
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
        self._sampler.start()

    # --- workers ---

    def start_worker(self) -> WorkerProcess:
        number = len(self.workers)
        worker = WorkerProcess(
            {**self.overrides, "data_dir": self.rig.workdir / f"{self.name}-{number}"},
            self.rig.workdir / "logs" / f"worker-{self.name}-{number}.log",
            loglevel="info",  # rebalances, recoveries and seeks: what a stalled run needs told
        ).start()
        self.workers.append(worker)
        return worker

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL: no shutdown, nothing flushed or committed."""
        process = worker.process
        assert process is not None
        self.injected.add(process.pid)
        process.kill()
        process.wait()

    def terminate(self, worker: WorkerProcess) -> int | None:
        """SIGTERM and wait: the worker's clean shutdown; returns its exit code."""
        assert worker.process is not None
        self.injected.add(worker.process.pid)
        return worker.stop()

    def note_crashes(self) -> None:
        """Workers that ended on their own, not by a fault of ours, with an unclean code."""
        for worker in self.workers:
            process = worker.process
            if process is None or process.pid in self.injected:
                continue
            code = process.poll()
            if code is not None and code not in _CLEAN_EXITS:
                self.injected.add(process.pid)  # noted once
                self.crashes.append(f"worker {worker.log_path.name} exited with code {code}")

    def _sample_rss(self) -> None:
        while self._watching:
            for worker in self.workers:
                process = worker.process
                if process is not None and process.poll() is None:
                    self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(process.pid) or 0.0)
            time.sleep(_RSS_INTERVAL_S)

    # --- load ---

    def produce(self, messages: Sequence[Message]) -> None:
        """Send all at once (a backlog) and wait for the broker's acknowledgement."""

        async def send() -> None:
            async with Producer(self.settings.kafka_bootstrap, self.settings.topic_events) as producer:
                await producer.send(messages)

        asyncio.run(send())
        self.sent.update(message.partition for message in messages)

    def offer(self, messages: Sequence[Message], rate: float) -> BackgroundLoad:
        return BackgroundLoad(self, messages, rate)

    def committed(self) -> list[int]:
        return committed_offsets(
            self.settings.kafka_bootstrap,
            self.settings.app_id,
            self.settings.topic_events,
            self.settings.topic_partitions,
            security=self._security,
            timeout_s=_READ_TIMEOUT_S,
        )

    def wait_caught_up(self, row: Row, timeout_s: float) -> None:
        """Until the group has committed every message sent: all of them delivered; if it does
        not happen in ``timeout_s``, the failure goes in ``row`` (the accounting then says what
        is missing). A worker that ends on its own meanwhile is a crash. A wait past
        ``_SLOW_CATCH_UP_S`` is noted in ``row`` with the workers' progress at that moment, and
        so is a read of the committed offsets slower than ``_SLOW_READ_S`` (a slow wait may be
        the reader's, not the workers')."""
        ends = [self.sent[p] for p in range(self.settings.topic_partitions)]
        committed: list[int] = []
        started = time.monotonic()
        slow_noted = False
        slowest_read_s = 0.0

        def caught_up() -> bool:
            nonlocal slow_noted, slowest_read_s
            self.note_crashes()
            reading = time.monotonic()
            with contextlib.suppress(KafkaTimeoutError):  # noted below as a slow read; read again
                committed[:] = self.committed()
            slowest_read_s = max(slowest_read_s, time.monotonic() - reading)
            done = len(committed) == len(ends) and all(
                offset >= end for offset, end in zip(committed, ends, strict=True)
            )
            if not done and not slow_noted and time.monotonic() - started > _SLOW_CATCH_UP_S:
                slow_noted = True
                row.notes.append(
                    f"not all committed after {_SLOW_CATCH_UP_S:g} s: {committed} of {ends} per partition "
                    f"({self._live_progress()})"
                )
            return done

        try:
            wait_until(caught_up, timeout_s=timeout_s, what="all committed", interval_s=0.5)
        except TimeoutError:
            row.require(
                False,
                f"not all committed within {timeout_s:g} s: {committed} of {ends} per partition "
                f"({self._live_progress()})",
            )
            for worker in self._live_workers():  # the table has no room for what they logged
                log(f"{row.scenario}: the end of {worker.log_path.name}:\n{worker.log_tail()}")
        if slowest_read_s > _SLOW_READ_S:
            row.notes.append(f"a read of the group's committed offsets took {slowest_read_s:.1f} s")

    def _live_workers(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.process and worker.process.poll() is None]

    def _live_progress(self) -> str:
        live = self._live_workers()
        progress = "; ".join(f"{worker.log_path.name}: {worker.progress()}" for worker in live)
        return f"live workers: {progress or 'none'}"

    def collect(self, row: Row, timeout_s: float) -> Outputs:
        """What came out, once everything sent is committed (see :meth:`wait_caught_up`)."""
        self.wait_caught_up(row, timeout_s)
        return self.outputs()

    # --- results ---

    def read(self, topic: str) -> list[OutputRecord]:
        return [
            OutputRecord(record.key, record.value, {name: value for name, value in record.headers})
            for record in read_until_idle(
                self.settings.kafka_bootstrap,
                topic,
                self.settings.topic_partitions,
                self._read_idle_s,
                security=self._security,
            )
        ]

    @property
    def _security(self) -> KafkaSecurity:
        return KafkaSecurity.from_settings(self.settings)

    @property
    def _read_idle_s(self) -> float:
        """How long a topic must stay quiet to be read to its end: ten fetch waits (a broker
        on S3 storage waits 500 ms a fetch), at least a second."""
        return max(1.0, 10 * self.settings.tansu_fetch_max_wait_ms / 1000)

    def outputs(self) -> Outputs:
        """Everything read back and accounted for; windows checked against a replay."""
        inputs = [
            InputMessage(record.partition, record.offset, record.key, record.value, record.timestamp)
            for record in read_until_idle(
                self.settings.kafka_bootstrap,
                self.settings.topic_events,
                self.settings.topic_partitions,
                self._read_idle_s,
                at_least=sum(self.sent.values()),  # every message the broker acknowledged
                security=self._security,
            )
        ]
        recommendations = [
            orjson.loads(record.value)
            for record in self.read(self.settings.topic_recommendations)
            if record.value
        ]
        dead_letters = self.read(self.settings.topic_dead_letter)
        changelog = self.read(f"{self.settings.app_id}-windows-changelog")
        return Outputs(
            account(inputs, recommendations, dead_letters, self.settings),
            recommendations,
            window_mismatches(expected_windows(inputs, self.settings), changelog),
        )

    def finish(self, row: Row, outputs: Outputs) -> Row:
        """Stop the workers still running and fill the row's common columns and targets."""
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                code = worker.stop()
                if code not in _CLEAN_EXITS:
                    self.crashes.append(f"worker {worker.log_path.name} stopped with code {code}")
        self.note_crashes()
        self._watching = False
        accounting = outputs.accounting
        row.events_in, row.accounted = accounting.events_in, accounting.accounted
        row.lost, row.duplicates = len(accounting.lost), accounting.duplicates
        row.peak_rss_mb = self.peak_rss_mb or None
        row.require(not accounting.lost, f"{len(accounting.lost)} lost, first at {accounting.lost[:3]}")
        row.require(not self.crashes, "; ".join(self.crashes))
        mismatched = outputs.window_mismatches
        row.require(not mismatched, f"{len(mismatched)} windows differ from a replay, e.g. {mismatched[:3]}")
        rewinds = sum(worker.log_text().count(_REWIND_WARNING) for worker in self.workers)
        if rewinds:  # recovered, so not a failure; but a consumer defect was hit, and shown
            row.notes.append(f"{rewinds} partition rewinds after a stall (worker logs: {_REWIND_WARNING!r})")
        return row

    @contextmanager
    def abandoned_on_error(self) -> Iterator[None]:
        """A scenario's body: whatever it raises, the trial's workers are killed first."""
        try:
            yield
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Kill what is left after a scenario that failed part-way."""
        self._watching = False
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
