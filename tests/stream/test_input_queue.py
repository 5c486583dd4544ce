"""The events topic's queue pauses fetching on bytes held until acknowledged, not only on a count."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import faust
import pytest
from mode.utils.queues import FlowControlEvent

from stream.input_queue import EventsTopic, InputQueue
from stream.settings import Settings
from stream.topics import declare_topics

pytestmark = pytest.mark.unit


def _event(value_bytes: int) -> Any:
    message = SimpleNamespace(serialized_key_size=8, serialized_value_size=value_bytes - 8)
    return SimpleNamespace(message=message)


class _Partition:
    """What the conductor passes for one partition: pause and resume its fetching."""

    def __init__(self) -> None:
        self.paused = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


def _deliver(queue: InputQueue[Any], partition: _Partition, event: Any) -> None:
    queue.put_nowait_enhanced(event, on_pressure_high=partition.pause, on_pressure_drop=partition.resume)


def test_fetching_pauses_at_the_byte_budget_and_resumes_only_when_acknowledged_bytes_fall_low() -> None:
    queue: InputQueue[Any] = InputQueue(4096, max_bytes=1000, flow_control=FlowControlEvent())
    partition = _Partition()
    events = [_event(400) for _ in range(4)]
    for event in events[:3]:
        _deliver(queue, partition, event)
    assert not partition.paused  # 800 bytes held when the third came: under the budget
    _deliver(queue, partition, events[3])
    assert partition.paused and queue.held_bytes == 1600  # a count of 4 is far below 4096

    taken = [queue.get_nowait() for _ in range(4)]
    assert partition.paused  # taken into batches is still held until acknowledged
    queue.release(taken[:2])
    assert partition.paused and queue.held_bytes == 800  # above 40% of the budget
    queue.release(taken[2:])
    assert not partition.paused and queue.held_bytes == 0


def test_a_single_message_over_the_budget_pauses_and_then_resumes() -> None:
    queue: InputQueue[Any] = InputQueue(4096, max_bytes=1000, flow_control=FlowControlEvent())
    partition = _Partition()
    big, after = _event(5000), _event(100)
    _deliver(queue, partition, big)
    _deliver(queue, partition, after)
    assert partition.paused
    queue.release([queue.get_nowait(), queue.get_nowait()])
    assert not partition.paused


def test_cleared_events_stop_counting() -> None:
    queue: InputQueue[Any] = InputQueue(4096, max_bytes=1000, flow_control=FlowControlEvent())
    for _ in range(3):
        _deliver(queue, _Partition(), _event(200))
    queue.clear()
    assert queue.held_bytes == 0 and queue.empty()


def test_the_agents_channel_buffers_in_an_input_queue_with_the_configured_budget() -> None:
    settings = Settings(input_buffer_max_bytes=5_000_000)
    app = faust.App("input-queue-test", broker="memory://", autodiscover=False)
    topics = declare_topics(app, settings)
    assert isinstance(topics.events, EventsTopic)
    iterating = topics.events.clone(is_iterator=True)
    assert isinstance(iterating.queue, InputQueue) and iterating.queue.max_bytes == 5_000_000
