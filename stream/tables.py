"""The windows table: user id (UTF-8) -> encoded window (:mod:`stream.window`), changelog-backed."""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.types import TP, EventT, StoreT, TableT
from faust.types.tuples import RecordMetadata

from stream.metrics import StreamMetrics
from stream.outputs import Delivery
from stream.records import Window
from stream.settings import Settings
from stream.window import CorruptWindow, decode_window, encode_window

__all__ = ["WindowStore", "declare_windows"]

log = logging.getLogger(__name__)


def declare_windows(app: faust.App, settings: Settings) -> TableT:
    return app.Table(
        "windows",
        # bytes -> Faust's "raw" codec for the changelog too; a str key would come back from
        # recovery as bytes and miss the live entries.
        key_type=bytes,
        value_type=bytes,
        partitions=settings.topic_partitions,
        help="Per-user sliding window of recent events",
    )


class WindowStore:
    """Typed access to the windows table from inside a batch."""

    def __init__(self, table: TableT, metrics: StreamMetrics) -> None:
        self._table = table
        self._metrics = metrics

    def get(self, user_id: str) -> Window:
        """The user's window; an empty one, counted and logged, if the stored value is corrupt
        (one user's history is lost rather than the stream stopped on every restart)."""
        try:
            return decode_window(self._table.get(user_id.encode()))
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
        topic = self._table.changelog_topic.get_topic_name()
        partition = source.message.partition
        delivery: Any = await self._table.app.producer.send(topic, key, value, partition, None, None)
        delivery.add_done_callback(self._persisted)
        self._table.data[key] = value
        return delivery

    def _persisted(self, delivery: Any) -> None:
        """What a disk-backed store records to know, after a restart, where its recovery starts."""
        if not delivery.cancelled() and delivery.exception() is None:
            metadata: RecordMetadata = delivery.result()
            store: StoreT = self._table.data  # type: ignore[assignment]
            store.set_persisted_offset(TP(metadata.topic, metadata.partition), metadata.offset)
