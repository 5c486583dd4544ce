"""Log lines that a producer's stream can trigger at any rate, sampled so they cannot flood."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["SampledLog"]


class SampledLog:
    """At most ``per_interval`` lines every ``interval_s``; the next line written after an
    interval says how many were left out."""

    def __init__(
        self,
        logger: logging.Logger,
        per_interval: int = 10,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._per_interval = per_interval
        self._interval_s = interval_s
        self._clock = clock
        self._interval_start = -float("inf")
        self._written = 0
        self._left_out = 0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._interval_start >= self._interval_s:
            if self._left_out:
                self._logger.warning(
                    "%d similar lines left out in the last %.0f s", self._left_out, self._interval_s
                )
            self._interval_start, self._written, self._left_out = now, 0, 0
        if self._written < self._per_interval:
            self._written += 1
            self._logger.warning(message, *args)
        else:
            self._left_out += 1
