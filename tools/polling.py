"""Waiting for a condition with a deadline: the one polling loop of the tools and tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")

_INTERVAL_S: Final = 0.05


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = _INTERVAL_S,
    check: Callable[[], None] | None = None,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    ``check`` runs before each try and may raise to give up early (a process that died);
    a deadline that passes raises ``TimeoutError`` saying what did not happen.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if check is not None:
            check()
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(interval_s)
