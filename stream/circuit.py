"""When the stream stops asking Triton: a circuit breaker over outages.

Closed, every batch calls Triton and waits out short failures. Once calls have failed for
``open_after_s`` without a success in between, the circuit opens: batches are answered by the
fallback (:mod:`stream.fallback`) at once instead of piling retries on a server that is down,
and one batch per ``probe_interval_s`` tries Triton again. The first answer closes it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]

log = logging.getLogger(__name__)


class CircuitBreaker:
    """``open_after_s=math.inf`` never opens: the stream then waits for Triton for as long as
    it takes."""

    def __init__(
        self,
        open_after_s: float,
        probe_interval_s: float,
        *,
        on_change: Callable[[bool], None] = lambda is_open: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_after_s = open_after_s
        self._probe_interval_s = probe_interval_s
        self._on_change = on_change
        self._clock = clock
        self._failing_since: float | None = None
        self._next_probe = math.inf  # while open: when the next batch may try Triton
        self.is_open = False

    def may_call(self) -> bool:
        """Whether this batch calls Triton: always while closed; while open, one batch per
        probe interval."""
        if not self.is_open:
            return True
        now = self._clock()
        if now < self._next_probe:
            return False
        self._next_probe = now + self._probe_interval_s
        return True

    def failed(self) -> bool:
        """A call failed as Triton does when it is out; True if the circuit is (now) open."""
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        if not self.is_open and now - self._failing_since >= self._open_after_s:
            self.is_open = True
            self._next_probe = now + self._probe_interval_s
            log.error(
                "Triton has failed for %.1fs: the circuit is open, batches get the fallback and one "
                "tries Triton every %.1fs",
                now - self._failing_since,
                self._probe_interval_s,
            )
            self._on_change(True)
        return self.is_open

    def succeeded(self) -> None:
        if self.is_open:
            log.warning(
                "Triton answers again after %.1fs: the circuit is closed",
                self._clock() - (self._failing_since or 0.0),
            )
            self.is_open = False
            self._next_probe = math.inf
            self._on_change(False)
        self._failing_since = None
