"""The window store over a recording table: changelog writes to the user's partition, idle
users evicted by event time with tombstones, the index rebuilt from recovery."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from stream import tables
from stream.metrics import StreamMetrics
from stream.records import WindowEvent
from stream.tables import WindowStore
from stream.window import decode_window, encode_window

pytestmark = pytest.mark.unit

MINUTE_MS = 60_000


class Store(dict[bytes, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[Any, int] = {}

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp] = offset


class Table:
    """A Faust table's surface that the store uses; every send is delivered at once."""

    def __init__(self) -> None:
        self.data = Store()
        self.sent: list[tuple[bytes, bytes | None, int]] = []
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "app-windows-changelog")
        self.app = SimpleNamespace(producer=SimpleNamespace(send=self._send))

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    async def _send(self, topic: str, key: bytes, value: bytes | None, partition: int, *rest: Any) -> Any:
        self.sent.append((key, value, partition))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(SimpleNamespace(topic=topic, partition=partition, offset=len(self.sent) - 1))
        return delivered


def store_over(table: Table, idle_minutes: int = 60) -> tuple[WindowStore, StreamMetrics]:
    metrics = StreamMetrics.create()
    return WindowStore(cast(Any, table), metrics, idle_evict_ms=idle_minutes * MINUTE_MS), metrics


class Source:
    """An event of the user's, as far as the store looks at it (weak-referenceable, as events are)."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def source(partition: int) -> Any:
    return Source(partition)


async def put(store: WindowStore, user_id: str, minute: int, partition: int = 0) -> None:
    window = (WindowEvent(f"{user_id}-{minute}", "i1", "view", minute * MINUTE_MS),)
    await (await store.put(user_id, window, source(partition)))


async def test_a_window_goes_to_the_changelog_partition_of_its_users_events() -> None:
    table = Table()
    store, _ = store_over(table)
    await put(store, "ann", 1, partition=3)
    assert [(key, partition) for key, _, partition in table.sent] == [(b"ann", 3)]
    assert [event.event_id for event in decode_window(table.data[b"ann"])] == ["ann-1"]
    await asyncio.sleep(0)  # delivery callbacks run on the next loop iteration
    assert table.data.persisted == {("app-windows-changelog", 3): 0}  # TP(topic, partition)


async def test_users_idle_past_the_limit_behind_their_partitions_newest_event_are_evicted() -> None:
    table = Table()
    store, metrics = store_over(table, idle_minutes=60)
    await put(store, "old", 0)
    await put(store, "recent", 50)
    await put(store, "back", 0)
    await put(store, "back", 90)  # came back: its first write must not evict it
    await put(store, "elsewhere", 0, partition=1)
    await put(store, "now", 100)
    table.sent.clear()

    tombstones = await store.evict_idle({0})
    await asyncio.gather(*tombstones)
    assert table.sent == [(b"old", None, 0)]
    assert set(table.data) == {b"recent", b"back", b"elsewhere", b"now"}
    assert metrics.windows_evicted._value.get() == 1
    assert metrics.windows_stored._value.get() == 4
    assert metrics.windows_stored_bytes._value.get() == sum(map(len, table.data.values()))
    assert await store.evict_idle({0}) == []  # nothing twice


async def test_recovery_rebuilds_the_index_so_recovered_idle_users_are_evicted_too() -> None:
    table = Table()
    store, metrics = store_over(table, idle_minutes=60)
    for key, minute in ((b"gone", 0), (b"idle", 5), (b"fresh", 100)):
        value = encode_window((WindowEvent(f"{key.decode()}-e", "i", "view", minute * MINUTE_MS),))
        table.data[key] = value
        store.recovered(2, key, value)
    store.recovered(2, b"gone", None)  # its tombstone, later in the changelog
    del table.data[b"gone"]
    table.data.pop(b"dropped", None)
    store.recovered(2, b"dropped", encode_window((WindowEvent("d", "i", "view", 0),)))
    await store.reindex()  # Faust dropped it with a revoked partition
    assert metrics.windows_stored._value.get() == 2  # reported once recovered, before any batch

    tombstones = await store.evict_idle({2})
    await asyncio.gather(*tombstones)
    assert table.sent == [(b"idle", None, 2)]
    assert set(table.data) == {b"fresh"}


def test_a_batch_evicts_a_bounded_number_and_the_rest_goes_next_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "MAX_EVICTIONS_PER_BATCH", 3)

    async def scenario() -> None:
        table = Table()
        store, _ = store_over(table, idle_minutes=1)
        for n in range(5):
            await put(store, f"u{n}", 0)
        await put(store, "now", 10)
        assert len(await store.evict_idle({0})) == 3
        assert len(await store.evict_idle({0})) == 2
        assert set(table.data) == {b"now"}

    asyncio.run(scenario())


async def test_the_idle_queue_stays_within_twice_the_index_however_often_users_write() -> None:
    table = Table()
    store, _ = store_over(table, idle_minutes=10_000)
    for minute in range(3000):
        await put(store, f"u{minute % 3}", minute)
    await store.evict_idle({0})
    assert store._idle_entries <= 2 * 3 + tables.MAX_EVICTIONS_PER_BATCH
