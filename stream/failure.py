"""Fail fast: a batch that fails stops the worker instead of leaving it alive and stuck.

Faust's answer to an exception in an agent is to restart the agent on the same stream, past
the batch's events: they are never acknowledged, so the partition's commits freeze or skip
them (faust-streaming issue #606). Stopping the worker the way SIGTERM does
commits only what was acknowledged; the group rebalances and a restarted worker reads the
failed batch's events again from the committed offsets.
"""

from __future__ import annotations

import logging
import os
import signal

__all__ = ["FailFast", "WorkerFailed"]

log = logging.getLogger(__name__)


class WorkerFailed(RuntimeError):
    """The worker stopped because a batch failed; restarting it re-reads that batch."""


class FailFast:
    """Remembers the first failure and asks this process to stop, as an operator's SIGTERM would."""

    def __init__(self) -> None:
        self.reason: BaseException | None = None

    def stop_worker(self, reason: BaseException) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        log.critical(
            "stopping the worker: a batch failed (%s: %s); its events stay unacknowledged and are "
            "read again when the worker restarts",
            type(reason).__name__,
            reason,
            exc_info=reason,
        )
        os.kill(os.getpid(), signal.SIGTERM)

    def raise_if_failed(self) -> None:
        if self.reason is not None:
            raise WorkerFailed(
                f"the worker stopped because a batch failed ({type(self.reason).__name__}: {self.reason}); "
                "restart it: it reads the unacknowledged events again"
            ) from self.reason
