"""Batches of events taken from an agent's channel in bulk, acknowledged once processed.

Faust's ``Stream.take_events`` moves every event through the stream iterator one at a time
(a coroutine hop, processors, sensors, a context variable), which costs more than the rest of
a do-nothing agent; taking the channel's queued events in bulk costs a fraction of it
(docs/2026-11-stream-performance.md). What the stream did per event is kept, per batch:

- an event is tracked as unacknowledged when taken, so the worker's shutdown waits for it and
  no offset is committed past it; it is acknowledged only by :meth:`EventBatch.acknowledge`,
  after its batch is delivered (a batch that fails is never acknowledged, and is released
  from tracking so that the shutdown that follows does not wait for it);
- events taken while the flow is suspended, or fetched before the latest rebalance, are
  dropped untracked: their partitions are read again from the committed offset;
- the bytes of every event count against the input budget of :mod:`stream.input_queue` until
  its batch is acknowledged, or until it is dropped.

Faust clears a stream's queue whenever flow control resumes, which includes the end of every
table recovery, after the stream partitions were resumed and sought: events fetched in
between were cleared unprocessed and never read again (a worker restarted over a backlog sat
idle). The reader's queue is kept out of that clearing; events of an earlier rebalance are
dropped by the generation check above instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from faust.types import ChannelT, EventT, StreamT

from stream.input_queue import InputQueue

__all__ = ["EventBatch", "EventReader", "take_batch"]

T = TypeVar("T")


async def take_batch(
    queue: asyncio.Queue[T], max_events: int, max_wait_s: float, downstream_idle: Callable[[], bool]
) -> list[T]:
    """A batch that starts with the next item and closes when ``max_events`` are taken,
    ``max_wait_s`` after its first item, or as soon as the queued items are taken while
    ``downstream_idle()`` is true, whichever comes first.

    Waiting only pays while the model is busy: the events a user sends meanwhile coalesce into
    one prediction, and the batch is ready when the model is. With the model idle, waiting
    would only add latency.
    """
    taken = [await queue.get()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while len(taken) < max_events:
        while not queue.empty() and len(taken) < max_events:
            taken.append(queue.get_nowait())
        remaining = deadline - loop.time()
        if len(taken) >= max_events or remaining <= 0 or downstream_idle():
            break
        try:
            taken.append(await asyncio.wait_for(queue.get(), remaining))
        except TimeoutError:
            break
    return taken


@dataclass
class EventBatch:
    """Events taken together from the stream, tracked until the batch acknowledges itself."""

    events: list[EventT]
    queue: InputQueue
    taken_at: float = field(default_factory=time.monotonic)
    acknowledged: bool = False

    def __len__(self) -> int:
        return len(self.events)

    def acknowledge(self) -> None:
        """Mark the batch's offsets safe to commit: call once all its outputs are delivered."""
        for event in self.events:
            event.ack()
        self.queue.release(self.events)
        self.acknowledged = True


class EventReader:
    """Reads the events of one agent's stream in batches closed as :func:`take_batch` says."""

    def __init__(
        self,
        stream: StreamT,
        max_events: int,
        max_wait_s: float,
        downstream_idle: Callable[[], bool],
    ) -> None:
        # An agent's stream reads the iterator clone of its topic, which owns the queue that
        # the conductor fills.
        queue = cast(ChannelT, stream.channel).queue
        if not isinstance(queue, InputQueue):
            raise TypeError(f"the agent's topic must be an input_queue.EventsTopic: {stream.channel!r}")
        self._queue = queue
        self._app = stream.app
        stream.app.flow_control._queues.discard(self._queue)
        self._unacked = stream.app.consumer.unacked
        self._acking_topics = stream.app.topics.acking_topics
        self._max_events = max_events
        self._max_wait_s = max_wait_s
        self._downstream_idle = downstream_idle
        self._in_flight: deque[EventBatch] = deque()  # taken, in order; acknowledged ones leave

    async def next_batch(self) -> EventBatch | None:
        """The next non-empty batch of current events (waits for the first one); None once
        the channel has ended (the worker is stopping)."""
        while True:
            try:
                taken = await take_batch(
                    self._queue, self._max_events, self._max_wait_s, self._downstream_idle
                )
            except StopAsyncIteration:
                return None
            batch: list[EventT] = []
            stale: list[EventT] = []
            for event in taken:
                (batch if self._is_current(event) else stale).append(event)
            self._queue.release(stale)
            for event in batch:
                message = event.message
                if message.topic in self._acking_topics and not message.tracked:
                    message.tracked = True
                    self._unacked.add(message)
            if batch:
                while self._in_flight and self._in_flight[0].acknowledged:
                    self._in_flight.popleft()
                taken_batch = EventBatch(batch, self._queue)
                self._in_flight.append(taken_batch)
                return taken_batch

    @property
    def held_bytes(self) -> int:
        """Input bytes fetched and not yet acknowledged (see :mod:`stream.input_queue`)."""
        return self._queue.held_bytes

    def oldest_unacknowledged_age_s(self) -> float:
        """Seconds since the oldest batch not yet acknowledged was taken (0 when none is).
        Batches are acknowledged in order, so a growing age is a batch stuck in flight."""
        now = time.monotonic()
        # A copy: a scrape reads this from another thread while the loop appends.
        pending = [batch for batch in list(self._in_flight) if not batch.acknowledged]
        return now - pending[0].taken_at if pending else 0.0

    def release_unacknowledged(self) -> None:
        """Stop tracking the events taken and not acknowledged, after a failure: the shutdown
        that follows would otherwise wait for them forever. Their offsets stay uncommitted, so
        they are read again."""
        for message in [message for message in self._unacked if not message.acked]:
            self._unacked.discard(message)

    def _is_current(self, event: EventT) -> bool:
        app = self._app
        return app.flow_control.is_active() and event.message.generation_id == app.consumer_generation_id
