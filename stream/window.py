"""A user's sliding window: the newest ``size`` events within ``horizon_ms`` of the newest one.

Pure functions over immutable tuples, so the semantics are testable without Kafka.
Events are ordered by (event time, event id) whatever their arrival order; a redelivered
event id is ignored. Because eviction always drops the smallest (ts, id) keys, replaying
any already-seen event leaves the window unchanged, even one that was evicted earlier.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from stream.records import ACTION_CODES, ACTIONS, WindowEvent

__all__ = ["Window", "decode_window", "encode_window", "merge_events"]

Window = tuple[WindowEvent, ...]


def merge_events(window: Window, events: Iterable[WindowEvent], size: int, horizon_ms: int) -> Window:
    """Return the window after adding ``events``; ``window`` is left untouched."""
    by_id = {event.event_id: event for event in window}
    for event in events:
        by_id.setdefault(event.event_id, event)
    ordered = sorted(by_id.values(), key=lambda e: (e.ts_ms, e.event_id))
    if not ordered:
        return ()
    oldest_kept = ordered[-1].ts_ms - horizon_ms
    fresh = [event for event in ordered[-size:] if event.ts_ms >= oldest_kept]
    return tuple(fresh)


def encode_window(window: Window) -> bytes:
    """Compact table value: parallel arrays, actions as codes, times as deltas from the first."""
    if not window:
        return b"[]"
    base = window[0].ts_ms
    return orjson.dumps(
        [
            base,
            [e.event_id for e in window],
            [e.item_id for e in window],
            [ACTION_CODES[e.action] for e in window],
            [e.ts_ms - base for e in window],
        ]
    )


def decode_window(raw: bytes | None) -> Window:
    if not raw:
        return ()
    doc = orjson.loads(raw)
    if not doc:
        return ()
    base, event_ids, item_ids, codes, offsets = doc
    return tuple(
        WindowEvent(event_id, item_id, ACTIONS[code - 1], base + offset)
        for event_id, item_id, code, offset in zip(event_ids, item_ids, codes, offsets, strict=True)
    )
