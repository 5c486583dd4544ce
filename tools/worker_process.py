"""A stream worker as a child process: how the demo and the benchmark run theirs.

The child is a plain ``nextaction worker`` configured through ``NEXTACTION_*`` variables, so
it runs exactly what production runs; it is stopped with SIGTERM (a clean shutdown).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from stream.metrics_client import scrape

__all__ = ["wait_until_assigned", "worker_process"]


@contextmanager
def worker_process(
    overrides: Mapping[str, Any],
    *,
    loglevel: str = "warning",
    log: IO[bytes] | None = None,
    main_module: str = "stream",
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker whose settings are the environment's plus ``overrides`` (field -> value);
    ``main_module`` is run as ``python -m <main_module> worker``."""
    env = {**os.environ, **{f"NEXTACTION_{field.upper()}": str(value) for field, value in overrides.items()}}
    command = [sys.executable, "-m", main_module, "worker", "--loglevel", loglevel]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until_assigned(metrics_url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """Block until the worker owns input partitions, so measurements exclude its start-up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited during start-up (code {process.returncode})")
        try:
            if scrape(metrics_url).get("nextaction_assigned_partitions"):
                return
        except OSError:
            pass  # endpoint not up yet
        time.sleep(0.3)
    raise TimeoutError(f"the worker did not join its consumer group within {timeout_s:.0f} s")
