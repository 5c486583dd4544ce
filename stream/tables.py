"""The windows table: user id (UTF-8) -> encoded window (:mod:`stream.window`), changelog-backed."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import faust
from faust.streams import _current_event
from faust.types import EventT, TableT

from stream.metrics import StreamMetrics
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
