"""A progress line on stderr for long commands (replay, dump-events): at most one a second,
and none when stderr is not a terminal (logs, pipes) or when asked to be quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Call :meth:`advance` per unit of work; :meth:`close` ends the line."""

    def __init__(
        self, what: str, *, total: int | None = None, quiet: bool = False, stream: TextIO | None = None
    ) -> None:
        self._stream = stream or sys.stderr
        self._enabled = not quiet and self._stream.isatty()
        self._what = what
        self._total = total
        self._done = 0
        self._started = self._shown_at = time.monotonic()

    def advance(self, units: int = 1) -> None:
        self._done += units
        now = time.monotonic()
        if self._enabled and now - self._shown_at >= 1.0:
            self._shown_at = now
            self._show(now)

    def close(self) -> None:
        if self._enabled and self._done:
            self._show(time.monotonic())
            self._stream.write("\n")

    def _show(self, now: float) -> None:
        of_total = f"/{self._total:,} ({self._done / self._total:.0%})" if self._total else ""
        rate = self._done / max(now - self._started, 1e-9)
        self._stream.write(f"\r{self._what}: {self._done:,}{of_total}, {rate:,.0f}/s ")
        self._stream.flush()
