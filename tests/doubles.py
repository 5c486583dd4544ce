"""Small test helpers several test modules share: a clock the test moves, and an HTTP GET that
returns error statuses instead of raising them."""

from __future__ import annotations

import urllib.error
import urllib.request


class Clock:
    """A monotonic clock for code that takes ``clock=``; the test sets ``now``."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET, 4xx and 5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
