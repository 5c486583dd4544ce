"""The lean consumer's rewind, on a real Faust app and consumer with the consumer thread (the
one part that talks to the broker) stood in for."""

from __future__ import annotations

from collections.abc import Iterator

import faust
import pytest
from faust.types import TP

from stream.lean_transport import LeanConsumer
from stream.settings import Settings
from stream.transports import LEAN_SCHEME, register_transports

pytestmark = pytest.mark.unit

EVENTS_0 = TP("events", 0)


class ConsumerThread:
    """Owns ``events[0]`` and records the seeks a rewind makes."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return {EVENTS_0}

    def highwater(self, tp: TP) -> int:
        return 1700

    async def rewind(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


@pytest.fixture
def consumer() -> Iterator[LeanConsumer]:
    register_transports(Settings())
    app = faust.App("lean-test", broker=f"{LEAN_SCHEME}://127.0.0.1:1", autodiscover=False)
    consumer = app.consumer
    assert isinstance(consumer, LeanConsumer)
    consumer._thread = ConsumerThread()
    yield consumer


def seeks(consumer: LeanConsumer) -> list[tuple[TP, int]]:
    thread = consumer._thread
    assert isinstance(thread, ConsumerThread)
    return thread.seeks


async def test_a_rewind_reads_again_from_the_offset_and_puts_a_partition_left_out_back_in_the_fetch(
    consumer: LeanConsumer,
) -> None:
    consumer.pause_partitions([EVENTS_0])  # and never resumed
    consumer._buffered_partitions.add(EVENTS_0)  # and a full input buffer never let go
    consumer._committed_offset[EVENTS_0] = 1600  # what Faust believes; the broker holds 609
    consumer._acked[EVENTS_0] = [1600, 1601]
    assert consumer.fetch_state(EVENTS_0).startswith("paused")

    consumer.request_rewind(EVENTS_0, 609)
    await consumer._apply_rewinds()

    assert seeks(consumer) == [(EVENTS_0, 609)]
    assert consumer._read_offset[EVENTS_0] == 609
    assert consumer._committed_offset[EVENTS_0] == 609
    assert not consumer._acked.get(EVENTS_0)
    assert not consumer.held_back(EVENTS_0)
    assert EVENTS_0 in consumer._get_active_partitions()
    assert consumer.fetch_state(EVENTS_0).startswith("fetched, read to 609")


@pytest.mark.parametrize("state", ["rebalancing", "in_recovery"])
async def test_a_rewind_asked_for_before_a_rebalance_is_dropped(consumer: LeanConsumer, state: str) -> None:
    consumer.pause_partitions([EVENTS_0])  # the rebalance paused it until the table is restored
    consumer.request_rewind(EVENTS_0, 609)
    setattr(consumer.app, state, True)

    await consumer._apply_rewinds()
    setattr(consumer.app, state, False)
    await consumer._apply_rewinds()  # not kept for later either: the rebalance seeks by itself

    assert seeks(consumer) == []
    assert EVENTS_0 not in consumer._get_active_partitions()
    assert consumer.fetch_state(EVENTS_0).startswith("paused")
