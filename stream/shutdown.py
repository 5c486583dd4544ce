"""A stop that always ends: after SIGTERM the worker has ``NEXTACTION_SHUTDOWN_TIMEOUT_S`` to
finish its batches in flight and commit; past that, the process exits at once.

A graceful stop can wait forever on a broker or a Triton that is down (deliveries, the final
commit). Exiting without them loses nothing: offsets are committed only for acknowledged
batches, so a restarted worker reads the unfinished ones again. Orchestrators kill a process
that outlives its grace period anyway; exiting first, with a log line that says why, tells
the operator what happened.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Final

__all__ = ["EXIT_SHUTDOWN_TIMED_OUT", "ShutdownDeadline"]

log = logging.getLogger(__name__)

EXIT_SHUTDOWN_TIMED_OUT: Final = 7


class ShutdownDeadline:
    """``start()`` (idempotent) arms a timer that ends the process after ``timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self._timeout_s, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        log.critical(
            "the worker did not stop within NEXTACTION_SHUTDOWN_TIMEOUT_S=%gs (a server it waits "
            "for may be down): exiting now; unacknowledged events are read again after a restart",
            self._timeout_s,
        )
        logging.shutdown()
        os._exit(EXIT_SHUTDOWN_TIMED_OUT)
