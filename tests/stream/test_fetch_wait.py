"""The Tansu consumer's fetch wait grows while Tansu answers fetches with nothing short of the
partition's end, and eases back once records come."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.protocol.fetch import FetchRequest

from stream.tansu_transport import FetchWaitAdapter

pytestmark = pytest.mark.unit


class Client:
    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.cluster = "the client's cluster"

    async def send(self, node_id: int, request: Any) -> Any:
        return self.answers.pop(0)


def fetch(offset: int) -> FetchRequest:
    return FetchRequest(20, 1, 1 << 20, 0, [("events", [(0, offset, 1 << 20)])])


def answer(highwater: int, records: bytes) -> Any:
    # Fetch v11 partition data: partition, error, highwater, lso, log start, aborted, replica, records
    return SimpleNamespace(topics=[("events", [(0, 0, highwater, highwater, 0, None, -1, records)])])


async def test_the_wait_doubles_while_fetches_come_back_empty_short_of_the_end_and_eases_once_fed() -> None:
    client = Client()
    fetcher = SimpleNamespace(_client=client, _fetch_max_wait_ms=20)
    adapter = FetchWaitAdapter(fetcher, floor_ms=20, ceiling_ms=500)
    waits = []
    for highwater, records in [(900, b""), (900, b""), (900, b""), (900, b"batch"), (900, b"batch")]:
        client.answers.append(answer(highwater, records))
        await adapter.send(1, fetch(100))
        waits.append(fetcher._fetch_max_wait_ms)
    assert waits == [40, 80, 160, 144, 129]

    for _ in range(10):  # starved for good: capped
        client.answers.append(answer(900, b""))
        await adapter.send(1, fetch(100))
    assert fetcher._fetch_max_wait_ms == 500
    for _ in range(50):
        client.answers.append(answer(900, b"batch"))
        await adapter.send(1, fetch(100))
    assert fetcher._fetch_max_wait_ms == 20  # never below the setting


async def test_an_empty_answer_at_the_partition_end_changes_nothing_and_other_calls_pass_through() -> None:
    client = Client()
    fetcher = SimpleNamespace(_client=client, _fetch_max_wait_ms=20)
    adapter = FetchWaitAdapter(fetcher, floor_ms=20)
    client.answers.append(answer(100, b""))  # caught up: nothing to fetch
    await adapter.send(1, fetch(100))
    client.answers.append("metadata")
    assert await adapter.send(1, "a metadata request") == "metadata"
    assert fetcher._fetch_max_wait_ms == 20 and adapter.cluster == "the client's cluster"
