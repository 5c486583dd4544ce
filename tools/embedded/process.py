"""One way to run an embedded server: launch with a log file, wait until ready, stop for sure."""

from __future__ import annotations

import os
import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from tools.polling import wait_until

__all__ = ["EmbeddedServer", "EmbeddedServerError", "ServerProcess", "StartStop"]

_LOG_TAIL_LINES: Final = 30
_LOG_ERROR_LINES: Final = 10
_LOG_READ_BYTES: Final = 1 << 20


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be prepared, started or made ready; the message says why."""


class ServerProcess:
    """A server subprocess whose output goes to ``log_path``.

    ``start()`` returns once ``ready()`` is true and raises :class:`EmbeddedServerError`,
    with the tail of the log, if the process exits or the deadline passes first.
    ``stop()`` sends SIGTERM so the server can clean up (Triton frees its shared memory), and
    SIGKILL only if it has not exited after ``stop_timeout_s``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 15.0,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._argv = list(argv)
        self._ready = ready
        self._env = env
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        if self._popen is not None:
            raise EmbeddedServerError(f"{self.name} is already started (pid {self._popen.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The child inherits the environment (HOME, TMPDIR, ...) plus the launcher's overrides.
        env = {**os.environ, **self._env} if self._env is not None else None
        with self.log_path.open("wb") as log:
            # A session of its own, so that kill() reaches the server's children too (Triton's
            # backend stubs would otherwise outlive it, holding their shared memory).
            self._popen = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            self.wait_until(self._ready, "ready", self._start_timeout_s)
        except BaseException:
            # Not ready, or the caller was interrupted: never leave a half-started server behind.
            self.stop()
            raise
        return self

    def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float) -> None:
        """Poll ``condition`` until true; fail with the log tail if the process dies or time runs out."""
        try:
            wait_until(condition, timeout_s=timeout_s, what=f"{self.name} {what}", check=self._check_running)
        except TimeoutError:
            raise EmbeddedServerError(
                f"{self.name} was not {what} within {timeout_s:g} s\n" + self.log_tail()
            ) from None

    def _check_running(self) -> None:
        returncode = self._require_started().poll()
        if returncode is not None:
            raise EmbeddedServerError(f"{self.name} exited with code {returncode}\n" + self.log_tail())

    def stop(self) -> None:
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.terminate()  # SIGTERM
        try:
            popen.wait(self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()

    def kill(self) -> None:
        """SIGKILL to the server and its children: no chance to clean up (fault injection,
        not shutdown)."""
        popen, self._popen = self._popen, None
        if popen is not None and popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()

    def log_tail(self) -> str:
        """The log's last lines, after any earlier lines that mention an error, for messages.

        Servers often log the cause first and a screenful of shutdown or summary lines after it.
        """
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_READ_BYTES))
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc})"
        lines = [line for line in text.splitlines() if line.strip()]
        head, tail = lines[:-_LOG_TAIL_LINES], lines[-_LOG_TAIL_LINES:]
        errors = [line for line in head if "error" in line.lower()][-_LOG_ERROR_LINES:]
        excerpt = [f"--- earlier error lines of {self.log_path} ---", *errors] if errors else []
        return "\n".join([*excerpt, f"--- last lines of {self.log_path} ---", *tail])

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise EmbeddedServerError(f"{self.name} is not started")
        return self._popen


class StartStop(ABC):
    """Something started and stopped for sure: ``with`` starts it and stops it on the way out."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> object: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedServer(StartStop):
    """Start/stop protocol shared by the embedded servers.

    Subclasses prepare their files and command line in :meth:`_new_process`; ``start()`` is
    idempotent and ``stop()`` is safe to call at any time.
    """

    _process: ServerProcess | None = None

    @abstractmethod
    def _new_process(self) -> ServerProcess:
        """Prepare what the server needs and return its (not yet started) process."""

    def start(self) -> Self:
        if self._process is None:
            self._process = self._new_process().start()
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop()

    def kill(self) -> None:
        """Kill the server with SIGKILL (see :meth:`ServerProcess.kill`); ``start()`` may follow."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()

    @property
    def process(self) -> ServerProcess:
        if self._process is None:
            raise EmbeddedServerError(f"{type(self).__name__} is not started")
        return self._process
