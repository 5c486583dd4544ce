"""The windows table: user id (UTF-8) -> encoded window (:mod:`stream.window`), changelog-backed,
with idle users evicted so that state stays bounded."""

from __future__ import annotations

import heapq
import logging
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple, TypeVar

import faust
from faust.streams import _current_event
from faust.types import TP, EventT, StoreT, TableT
from faust.types.tuples import RecordMetadata

from stream.metrics import StreamMetrics
from stream.outputs import Delivery
from stream.records import Window
from stream.settings import Settings
from stream.window import CorruptWindow, decode_window, encode_window, newest_event_time

__all__ = ["MAX_EVICTIONS_PER_BATCH", "WindowStore", "declare_windows"]

log = logging.getLogger(__name__)

#: Evictions a batch takes on at most, so that a backlog of idle users never stalls one batch.
MAX_EVICTIONS_PER_BATCH: Final = 1000


def declare_windows(app: faust.App, settings: Settings, metrics: StreamMetrics) -> WindowStore:
    store: WindowStore | None = None

    async def recovered(event: EventT) -> None:
        assert store is not None
        store.recovered(event.message.partition, event.key, event.value)

    table = app.Table(
        "windows",
        # bytes -> Faust's "raw" codec for the changelog too; a str key would come back from
        # recovery as bytes and miss the live entries.
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        on_changelog_event=recovered,
        help="Per-user sliding window of recent events",
    )
    store = WindowStore(table, metrics, idle_evict_ms=int(settings.user_idle_evict_s * 1000))
    table.on_recover(store.reindex)
    return store


class _Stored(NamedTuple):
    partition: int  # of the user's events, and so of the window's changelog records
    newest_ts_ms: int
    size: int  # bytes of the stored value


class WindowStore:
    """Typed access to the windows table from inside a batch.

    Each partition has a clock, the newest event time stored from it; a user whose newest
    event is more than ``idle_evict_ms`` behind that clock is evicted, with a tombstone in the
    changelog so that recovery forgets the user too. Event time, not the wall clock, so a
    replay of old events evicts exactly what the live stream did.
    """

    def __init__(self, table: TableT, metrics: StreamMetrics, *, idle_evict_ms: int) -> None:
        self._table = table
        self._metrics = metrics
        self._idle_evict_ms = idle_evict_ms
        self._stored: dict[bytes, _Stored] = {}
        self._bytes = 0
        self._clocks: dict[int, int] = defaultdict(int)
        # Per partition, (newest event time, key) of each write; an entry that a later write
        # of the key superseded is skipped when it comes up.
        self._idle: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        self._idle_entries = 0

    def get(self, user_id: str, source: EventT) -> Window:
        """The user's window (``source``: an event of the user's); an empty one, counted and
        logged, if the stored value is corrupt (one user's history is lost rather than the
        stream stopped on every restart)."""
        try:
            return decode_window(_within_event(source, lambda: self._table.get(user_id.encode())))
        except CorruptWindow as exc:
            self._metrics.windows_reset.inc()
            log.error("window of user %r started afresh: %s", user_id, exc)
            return ()

    async def put(self, user_id: str, window: Window, source: EventT) -> Delivery:
        """Store the window and send it to the changelog partition of the event that made it
        (the user's own partition); the batch awaits the returned delivery before its offsets
        are acknowledged, so a commit never runs ahead of the state it depends on.

        Faust's own table writes go through a buffer whose failures are only logged, and its
        commit waits for that buffer at most until it is briefly idle (see
        docs/private-apis.md), so the changelog is written here directly.
        """
        key, value = user_id.encode(), encode_window(window)
        partition = source.message.partition
        delivery = await self._send(key, value, partition)
        _within_event(source, lambda: self._table.data.__setitem__(key, value))
        self._track(key, _Stored(partition, window[-1].ts_ms, len(value)))
        return delivery

    async def evict_idle(self, partitions: set[int]) -> list[Delivery]:
        """Evict the users of ``partitions`` (ones this worker owns: a batch's) who are idle;
        returns the tombstones' deliveries, which the batch awaits like its other writes."""
        deliveries: list[Delivery] = []
        for partition in partitions:
            horizon = self._clocks[partition] - self._idle_evict_ms
            queue = self._idle[partition]
            while queue and queue[0][0] < horizon and len(deliveries) < MAX_EVICTIONS_PER_BATCH:
                newest_ts_ms, key = heapq.heappop(queue)
                self._idle_entries -= 1
                stored = self._stored.get(key)
                if stored is None or stored.newest_ts_ms != newest_ts_ms or stored.partition != partition:
                    continue  # superseded by a later write, or evicted already
                deliveries.append(await self._send(key, None, partition))
                self._table.data.pop(key, None)
                self._untrack(key)
        if deliveries:
            self._metrics.windows_evicted.inc(len(deliveries))
        self._compact()
        self._report_size()
        return deliveries

    def recovered(self, partition: int, key: Any, value: Any) -> None:
        """A changelog record read while Faust restores the table (its recovery callback)."""
        if not isinstance(key, bytes):
            return
        if not value:
            self._untrack(key)
            return
        try:
            newest_ts_ms = newest_event_time(value)
        except CorruptWindow:
            return  # get() starts it afresh when the user comes back
        self._track(key, _Stored(partition, newest_ts_ms, len(value)))

    async def reindex(self) -> None:
        """After a recovery: keys Faust dropped with revoked partitions leave the index, and
        those a disk store restored from its own files (not from the changelog) join it."""
        data = self._table.data
        for key in [key for key in self._stored if key not in data]:
            self._untrack(key)
        for partition, key, value in _disk_items(data):
            if key not in self._stored:
                self.recovered(partition, key, value)
        self._report_size()

    async def _send(self, key: bytes, value: bytes | None, partition: int) -> Delivery:
        topic = self._table.changelog_topic.get_topic_name()
        delivery: Any = await self._table.app.producer.send(topic, key, value, partition, None, None)
        delivery.add_done_callback(self._persisted)
        return delivery

    def _persisted(self, delivery: Any) -> None:
        """What a disk-backed store records to know, after a restart, where its recovery starts."""
        if not delivery.cancelled() and delivery.exception() is None:
            metadata: RecordMetadata = delivery.result()
            store: StoreT = self._table.data  # type: ignore[assignment]
            store.set_persisted_offset(TP(metadata.topic, metadata.partition), metadata.offset)

    def _track(self, key: bytes, stored: _Stored) -> None:
        previous = self._stored.get(key)
        self._bytes += stored.size - (previous.size if previous else 0)
        self._stored[key] = stored
        if stored.newest_ts_ms > self._clocks[stored.partition]:
            self._clocks[stored.partition] = stored.newest_ts_ms
        if previous is None or previous[:2] != stored[:2]:
            heapq.heappush(self._idle[stored.partition], (stored.newest_ts_ms, key))
            self._idle_entries += 1

    def _untrack(self, key: bytes) -> None:
        stored = self._stored.pop(key, None)
        if stored is not None:
            self._bytes -= stored.size

    def _report_size(self) -> None:
        self._metrics.windows_stored.set(len(self._stored))
        self._metrics.windows_stored_bytes.set(self._bytes)

    def _compact(self) -> None:
        """Rebuild the queues once superseded entries outnumber live ones: memory stays within
        twice the index, and the work is paid for by the writes that superseded them."""
        if self._idle_entries <= 2 * len(self._stored) + MAX_EVICTIONS_PER_BATCH:
            return
        self._idle.clear()
        for key, stored in self._stored.items():
            self._idle[stored.partition].append((stored.newest_ts_ms, key))
        for queue in self._idle.values():
            heapq.heapify(queue)
        self._idle_entries = len(self._stored)


_T = TypeVar("_T")


def _within_event(event: EventT, action: Callable[[], _T]) -> _T:
    """Run a table access as if within ``event``: the disk store picks the partition's
    database by the current event, which inside a batch is the batch's last event, whatever
    its partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        return action()
    finally:
        _current_event.reset(token)


def _disk_items(store: Any) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition, key, value) of a disk store's open partition databases; none for memory."""
    for partition, database in dict(getattr(store, "_dbs", {})).items():
        for key, value in store._visible_items(database):
            yield partition, key, value
