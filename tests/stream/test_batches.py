"""When a batch of events closes: at its size, at its freshness bound, or early when the model is idle."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from mode.utils.queues import FlowControlEvent

from stream.batches import EventReader, take_batch
from stream.input_queue import InputQueue

pytestmark = pytest.mark.unit

MAX_WAIT_S = 0.6


def _queue_with(*items: int) -> asyncio.Queue[int]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    return queue


def _put_later(queue: asyncio.Queue[int], delay_s: float, item: int) -> None:
    asyncio.get_running_loop().call_later(delay_s, queue.put_nowait, item)


async def test_an_idle_model_takes_the_queued_events_without_waiting() -> None:
    queue = _queue_with(1, 2, 3)
    _put_later(queue, 0.1, 4)
    assert await take_batch(queue, 100, MAX_WAIT_S, downstream_idle=lambda: True) == [1, 2, 3]
    assert await queue.get() == 4  # left for the next batch


async def test_a_busy_model_lets_the_batch_gather_until_its_freshness_bound() -> None:
    queue = _queue_with(1)
    _put_later(queue, 0.1, 2)
    _put_later(queue, 0.2, 3)
    _put_later(queue, MAX_WAIT_S + 0.3, 4)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await take_batch(queue, 100, MAX_WAIT_S, downstream_idle=lambda: False) == [1, 2, 3]
    assert loop.time() - started >= MAX_WAIT_S - 0.01


async def test_a_batch_closes_at_the_first_arrival_after_the_model_becomes_idle() -> None:
    queue = _queue_with(1)
    busy = [True]
    asyncio.get_running_loop().call_later(0.1, busy.clear)
    _put_later(queue, 0.05, 2)
    _put_later(queue, 0.15, 3)
    _put_later(queue, 0.3, 4)
    assert await take_batch(queue, 100, MAX_WAIT_S, downstream_idle=lambda: not busy) == [1, 2, 3]


async def test_a_batch_never_exceeds_its_size_and_leaves_the_rest_queued() -> None:
    queue = _queue_with(*range(10))
    assert await take_batch(queue, 4, MAX_WAIT_S, downstream_idle=lambda: False) == [0, 1, 2, 3]
    assert queue.qsize() == 6


class _Message:
    def __init__(self, offset: int, generation_id: int) -> None:
        self.offset, self.generation_id = offset, generation_id
        self.topic, self.tracked, self.acked = "events", False, False
        self.serialized_key_size, self.serialized_value_size = 10, 90

    def ack(self) -> None:
        self.acked = True


class _Event:
    def __init__(self, offset: int, generation_id: int) -> None:
        self.message = _Message(offset, generation_id)

    def ack(self) -> None:
        self.message.ack()


def _reader(
    batch_size: int, generation_id: int = 1, clear_on_resume: bool = False
) -> tuple[EventReader, InputQueue[Any], FlowControlEvent, set[_Message]]:
    """An EventReader over Faust's own stream queue and flow control; the consumer's set of
    unacknowledged messages comes back too."""
    flow_control = FlowControlEvent(initially_suspended=False)
    queue: InputQueue[Any] = InputQueue(
        10, max_bytes=1000, flow_control=flow_control, clear_on_resume=clear_on_resume
    )
    unacked: set[_Message] = set()
    app = SimpleNamespace(
        consumer=SimpleNamespace(unacked=unacked),
        topics=SimpleNamespace(acking_topics={"events"}),
        flow_control=flow_control,
        consumer_generation_id=generation_id,
    )
    reader = EventReader(
        cast(Any, SimpleNamespace(channel=SimpleNamespace(queue=queue), app=app)),
        batch_size,
        0.01,
        lambda: True,
    )
    return reader, queue, flow_control, unacked


async def test_events_queued_when_flow_resumes_are_kept_and_earlier_generations_dropped() -> None:
    # Faust's own objects: a stream queue that flow control clears when it resumes.
    reader, queue, flow_control, unacked = _reader(10, generation_id=2, clear_on_resume=True)
    for offset, generation in [(7, 1), (8, 2), (9, 2)]:
        queue.put_nowait(_Event(offset, generation))
    flow_control.resume()  # as at the end of a table recovery, after the seek

    batch = await asyncio.wait_for(reader.next_batch(), timeout=5)  # the events must still be there
    assert batch is not None and [event.message.offset for event in batch.events] == [8, 9]
    assert {message.offset for message in unacked} == {8, 9}  # tracked until acknowledged
    assert reader.held_bytes == 200  # the dropped event's bytes no longer count
    reader.release_unacknowledged()
    assert unacked == set()


async def test_an_acknowledged_batch_stops_counting_against_the_input_budget() -> None:
    reader, queue, _, _ = _reader(2)
    for offset in range(3):
        queue.put_nowait(_Event(offset, 1))
    first = await reader.next_batch()
    assert first is not None and reader.held_bytes == 300  # taken, not yet acknowledged
    first.acknowledge()
    assert reader.held_bytes == 100 and all(event.message.acked for event in first.events)


async def test_the_oldest_unacknowledged_batch_ages_until_it_is_acknowledged() -> None:
    reader, queue, _, _ = _reader(1)
    assert reader.oldest_unacknowledged_age_s() == 0.0  # idle: nothing in flight
    for offset in range(2):
        queue.put_nowait(_Event(offset, 1))
    first = await reader.next_batch()
    await asyncio.sleep(0.05)
    second_taken_after = time.monotonic()
    second = await reader.next_batch()
    assert first is not None and second is not None
    # The first batch's age: taken at least the sleep (less the loop's timer slack) earlier.
    before = time.monotonic()
    assert reader.oldest_unacknowledged_age_s() >= before - second_taken_after + 0.04
    first.acknowledge()
    # Now the second's, which cannot exceed the time since it was taken.
    assert reader.oldest_unacknowledged_age_s() <= time.monotonic() - second_taken_after
    second.acknowledge()
    assert reader.oldest_unacknowledged_age_s() == 0.0
