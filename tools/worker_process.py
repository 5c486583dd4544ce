"""A stream worker as a child process: how the demo, the benchmark and the tests run theirs.

The child is a plain ``nextaction worker`` configured through ``NEXTACTION_*`` variables, so
it runs exactly what production runs; it is stopped with SIGTERM (a clean shutdown).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from tools.embedded.ports import LOOPBACK, free_port
from tools.embedded.process import StartStop
from tools.metrics_scrape import scrape
from tools.polling import wait_until

__all__ = ["WorkerExited", "WorkerProcess"]

_LOG_TAIL_CHARS = 12_000


class WorkerExited(RuntimeError):
    """The worker process ended while it was being waited for; the message has its log tail."""


# What a failed wait reports of the worker's progress.
_PROGRESS_METRICS = (
    "nextaction_assigned_partitions",
    "nextaction_events_consumed_total",
    "nextaction_events_acknowledged_total",
    "nextaction_batch_failures_total",
    "nextaction_oldest_unacknowledged_age_seconds",
)


# Per partition, summed: the backlog the worker sees, and the stalls it noticed.
_SUMMED_METRICS = ("nextaction_consumer_lag_records", "nextaction_partition_rewinds_total")


def _progress(values: Mapping[str, float]) -> str:
    shown = [
        f"{name.removeprefix('nextaction_')} {values[name]:g}" for name in _PROGRESS_METRICS if name in values
    ]
    for summed in _SUMMED_METRICS:
        per_partition = [value for name, value in values.items() if name.startswith(summed + "{")]
        if per_partition:
            shown.append(f"{summed.removeprefix('nextaction_')} {sum(per_partition):g}")
    return ", ".join(shown) or "no metrics"


class WorkerProcess(StartStop):
    """``python -m <module> worker [arguments]`` with the environment's settings plus
    ``overrides`` (setting name -> value); its output goes to ``log_path``.

    ``metrics_port`` is taken from the overrides or picked free, so the tools can follow the
    worker through its Prometheus endpoint.
    """

    def __init__(
        self,
        overrides: Mapping[str, Any],
        log_path: Path,
        *,
        loglevel: str = "info",
        module: str = "cli",
        arguments: Sequence[str] = (),
    ) -> None:
        self.metrics_port = int(overrides.get("metrics_port") or free_port())
        self.log_path = log_path
        self.env = {
            **os.environ,
            **{f"NEXTACTION_{name.upper()}": str(value) for name, value in overrides.items()},
            "NEXTACTION_METRICS_PORT": str(self.metrics_port),
        }
        self._command = [sys.executable, "-m", module, "worker", "--loglevel", loglevel, *arguments]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM (the worker finishes its batch in flight), then SIGKILL after ``timeout_s``;
        returns the exit code (None if it was never started)."""
        if self.process is None:
            return None
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait()

    def log_text(self) -> str:
        """The worker's whole log (a note in its place when there is none)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc})"

    def log_tail(self) -> str:
        """The end of the worker's log: enough to show a rebalance when a wait fails."""
        return self.log_text()[-_LOG_TAIL_CHARS:]

    def metrics(self) -> dict[str, float]:
        return scrape(self.metrics_url)

    def wait_assigned(self, timeout_s: float = 120) -> dict[str, float]:
        """Until the worker owns input partitions, so measurements exclude its start-up."""
        return self.wait_for_metrics(
            lambda values: values.get("nextaction_assigned_partitions", 0) > 0,
            "the worker joined its consumer group",
            timeout_s,
        )

    def wait_acknowledged(self, count: float, timeout_s: float = 120) -> dict[str, float]:
        """Until ``count`` events in all are acknowledged: their outputs (recommendations and
        dead letters) are delivered; returns the metrics at that moment."""
        return self.wait_for_metrics(
            lambda values: values.get("nextaction_events_acknowledged_total", -1) >= count,
            f"{count:g} events acknowledged",
            timeout_s,
        )

    def wait_for_metrics(
        self, condition: Callable[[dict[str, float]], bool], what: str, timeout_s: float
    ) -> dict[str, float]:
        """Scrape until ``condition(values)`` holds. An endpoint that does not answer yet
        satisfies nothing: the worker is still starting."""

        last: dict[str, float] = {}

        def satisfied() -> dict[str, float] | None:
            try:
                values = self.metrics()
            except OSError:
                return None
            last.update(values)
            return values if condition(values) else None

        try:
            return wait_until(
                satisfied, timeout_s=timeout_s, what=what, interval_s=0.2, check=self._check_running
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} (last seen: {_progress(last)})\n{self.log_tail()}") from None

    def progress(self) -> str:
        """The worker's progress metrics now, on one line (for a report of a failed wait)."""
        try:
            return _progress(self.metrics())
        except OSError as exc:
            return f"no metrics ({exc})"

    def _check_running(self) -> None:
        returncode = self._require_started().poll()
        if returncode is not None:
            raise WorkerExited(f"the worker exited with code {returncode}\n{self.log_tail()}")

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError("the worker process is not started")
        return self.process
