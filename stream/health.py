"""What the worker's probes answer: /livez (the event loop makes progress) and /readyz (the
worker can do its job: it has its share of the input, its windows, and the model).

The probes are served from another thread; every answer is computed from plain attributes
that the event loop sets, so a probe never waits for the loop it judges.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from stream.failure import FailFast

__all__ = ["Health", "Verdict"]


class Verdict(NamedTuple):
    ok: bool
    reason: str  # one short line, the probe's answer body


class Health:
    """Probe state. The loop calls :meth:`tick` every second (:mod:`stream.monitor`) whether
    events arrive or not, so an idle worker stays live and a blocked loop does not."""

    def __init__(self, failure: FailFast, stale_after_s: float, clock: Callable[[], float] = time.monotonic):
        self._failure = failure
        self._stale_after_s = stale_after_s
        self._clock = clock
        # Created just before the loop starts: start-up counts as progress until the first tick.
        self._last_tick = clock()
        self._partitions: int | None = None  # None until the group's first assignment
        self._recovered = False
        self._model_ready = False
        self._circuit_open = False

    def tick(self) -> None:
        self._last_tick = self._clock()

    def rebalancing(self) -> None:
        """A rebalance began: the windows are restored again before input is read."""
        self._recovered = False

    def assigned(self, partitions: int) -> None:
        self._partitions = partitions

    def recovered(self) -> None:
        """The rebalance is complete: the table holds the assigned partitions' windows."""
        self._recovered = True

    def model_ready(self) -> None:
        self._model_ready = True

    def circuit(self, is_open: bool) -> None:
        self._circuit_open = is_open

    def not_reading(self) -> str | None:
        """Why the worker does not read its input now; None while it does (partitions owned,
        windows restored, no batch failed)."""
        if self._failure.reason is not None:
            return "a batch failed"
        if not self._partitions:
            return "no partitions assigned"
        if not self._recovered:
            return "rebalancing, restoring the windows table"
        return None

    def live(self) -> Verdict:
        if (failed := self._failed()) is not None:
            return failed
        stalled = self._clock() - self._last_tick
        if stalled > self._stale_after_s:
            return Verdict(False, f"event loop stalled: no tick for {stalled:.0f}s")
        return Verdict(True, "live")

    def ready(self) -> Verdict:
        if (failed := self._failed()) is not None:
            return failed
        if self._partitions is None:
            return Verdict(False, "not ready: waiting for the consumer group's assignment")
        if not self._recovered:
            return Verdict(False, "not ready: rebalancing, restoring the windows table")
        if not self._model_ready:
            return Verdict(False, "not ready: waiting for the model on Triton")
        if self._circuit_open:
            return Verdict(False, "not ready: Triton is out (circuit open), publishing the fallback's")
        if self._partitions == 0:
            # A spare (more workers than partitions) is ready to take over: failing it would
            # stall every roll-out of a group that keeps one.
            return Verdict(True, "ready: no partitions assigned (spare)")
        return Verdict(True, f"ready: {self._partitions} partitions")

    def _failed(self) -> Verdict | None:
        reason = self._failure.reason
        if reason is None:
            return None
        return Verdict(False, f"stopping: a batch failed ({type(reason).__name__})")
