"""The windows table: user id -> encoded window (:mod:`stream.window`), changelog-backed."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import faust
from faust.streams import _current_event
from faust.types import EventT

from stream.settings import Settings
from stream.window import Window, decode_window, encode_window

__all__ = ["WindowStore", "declare_windows"]


def declare_windows(app: faust.App, settings: Settings) -> faust.Table:
    return app.Table(
        "windows",
        schema=faust.Schema(
            key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"
        ),
        partitions=settings.topic_partitions,
        help="Per-user sliding window of recent events",
    )


class WindowStore:
    """Typed access to the windows table from inside a batch."""

    def __init__(self, table: faust.Table) -> None:
        self._table = table

    def get(self, user_id: str) -> Window:
        return decode_window(self._table.get(user_id))

    def put(self, user_id: str, window: Window, source: EventT) -> None:
        # Faust sends a table write to the changelog partition of the "current event". Inside
        # a take_events() batch that is the batch's last event, whatever its partition, so the
        # write is pinned to the event that produced it (the user's own partition).
        _within_event(source, lambda: self._table.__setitem__(user_id, encode_window(window)))


def _within_event(event: EventT, action: Callable[[], None]) -> None:
    token = _current_event.set(weakref.ref(event))
    try:
        action()
    finally:
        _current_event.reset(token)
