"""The windows table: user id (UTF-8) -> encoded window (:mod:`stream.window`), changelog-backed."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import faust
from faust.streams import _current_event
from faust.types import EventT, TableT

from stream.records import Window
from stream.settings import Settings
from stream.window import decode_window, encode_window

__all__ = ["WindowStore", "declare_windows"]


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

    def __init__(self, table: TableT) -> None:
        self._table = table

    def get(self, user_id: str) -> Window:
        return decode_window(self._table.get(user_id.encode()))

    def put(self, user_id: str, window: Window, source: EventT) -> None:
        # Faust sends a table write to the changelog partition of the "current event". Inside
        # a take_events() batch that is the batch's last event, whatever its partition, so the
        # write is pinned to the event that produced it (the user's own partition).
        key, value = user_id.encode(), encode_window(window)
        _within_event(source, lambda: self._table.__setitem__(key, value))


def _within_event(event: EventT, action: Callable[[], None]) -> None:
    token = _current_event.set(weakref.ref(event))
    try:
        action()
    finally:
        _current_event.reset(token)
