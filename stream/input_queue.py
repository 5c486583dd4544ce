"""The events topic's queue, bounded in bytes as well as in events.

Faust bounds what a stream buffers by a count of events (``stream_buffer_maxsize``): past it,
the partitions that feed the queue stop being fetched until it drains. A count is no bound on
memory when one message may be a megabyte. This queue also counts the bytes of every event
from the moment the consumer hands it over until its batch is acknowledged (queued, batched,
scored, published), and puts the same pressure on the fetcher once they reach ``max_bytes``.
What the worker holds of its input is then at most ``max_bytes``, plus the fetch response
already in memory for each assigned partition (``consumer_max_fetch_size`` each, Faust's
default 1 MiB, or one record batch when a single one is larger).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.types import EventT
from mode.utils.queues import ThrowableQueue

__all__ = ["EventsTopic", "InputQueue", "event_bytes"]


def event_bytes(event: EventT) -> int:
    message = event.message
    return message.serialized_key_size + message.serialized_value_size


class InputQueue(ThrowableQueue[EventT]):
    """A stream queue whose pressure also counts the bytes held until :meth:`release`."""

    def __init__(self, maxsize: int, *, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(maxsize=maxsize, **kwargs)
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._resume_at_bytes = int(max_bytes * self.pressure_drop_ratio)

    def _put(self, event: EventT) -> None:  # asyncio.Queue's hook for every way in
        super()._put(event)
        self.held_bytes += event_bytes(event)

    def release(self, events: Iterable[EventT]) -> None:
        """The events are done with (acknowledged, or dropped unprocessed): their bytes no
        longer count, and fetching resumes once the rest is low enough."""
        self.held_bytes -= sum(event_bytes(event) for event in events)
        self.maybe_endorse_pressure_drop()

    def clear(self) -> None:
        queued: Iterable[EventT] = self._queue  # type: ignore[attr-defined]
        self.held_bytes -= sum(event_bytes(event) for event in queued)
        super().clear()

    def in_pressure_high_state(self, callback: Callable[[], None]) -> bool:
        pending = self._pending_pressure_drop_callbacks
        if self.held_bytes >= self.max_bytes and callback not in pending:
            pending.add(callback)
            self.on_pressure_high()
            return True
        return super().in_pressure_high_state(callback)

    def maybe_endorse_pressure_drop(self) -> None:
        if self.held_bytes <= self._resume_at_bytes:
            super().maybe_endorse_pressure_drop()


class EventsTopic(faust.Topic):
    """A topic whose iterating channels (the agent's) buffer in an :class:`InputQueue`."""

    def __init__(self, *args: Any, input_max_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.input_max_bytes = input_max_bytes

    @property
    def queue(self) -> ThrowableQueue:
        if self._queue is None:
            self._queue = InputQueue(
                self.maxsize or self.app.conf.stream_buffer_maxsize,
                max_bytes=self.input_max_bytes,
                flow_control=self.app.flow_control,
                clear_on_resume=True,
            )
        return self._queue

    def _clone_args(self) -> dict[str, Any]:
        return {**super()._clone_args(), "input_max_bytes": self.input_max_bytes}
