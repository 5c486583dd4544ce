"""A user's sliding window: the newest ``size`` events within ``horizon_ms`` of the newest one.

Pure functions over immutable tuples, so the semantics are testable without Kafka.
Events are ordered by (event time, event id) whatever their arrival order; a redelivered
event id is ignored. Because eviction always drops the smallest (ts, id) keys, replaying
any already-seen event leaves the window unchanged, even one that was evicted earlier.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from stream.records import ACTION_CODES, WindowEvent

__all__ = ["Window", "decode_window", "encode_window", "merge_events"]

Window = tuple[WindowEvent, ...]


def merge_events(window: Window, events: Iterable[WindowEvent], size: int, horizon_ms: int) -> Window:
    """Return the window after adding ``events``; ``window`` is left untouched."""
    by_id = {event.event_id: event for event in window}
    for event in events:
        by_id.setdefault(event.event_id, event)
    ordered = list(by_id.values())
    if len(ordered) > len(window) and not _in_order(ordered, len(window)):
        ordered.sort(key=_order)
    if not ordered:
        return ()
    oldest_kept = ordered[-1].ts_ms - horizon_ms
    kept = ordered[-size:]
    if kept[0].ts_ms < oldest_kept:
        kept = [event for event in kept if event.ts_ms >= oldest_kept]
    return tuple(kept)


def _order(event: WindowEvent) -> tuple[int, str]:
    return event.ts_ms, event.event_id


def _in_order(events: list[WindowEvent], start: int) -> bool:
    """Whether the events from ``start`` on (the new ones) extend an ordered prefix in order.

    The common case, events arriving in event-time order, then needs no sort.
    """
    previous = _order(events[start - 1]) if start else None
    for event in events[start:]:
        key = _order(event)
        if previous is not None and key < previous:
            return False
        previous = key
    return True


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
    if not len(event_ids) == len(item_ids) == len(codes) == len(offsets):
        raise ValueError("corrupt window encoding: columns differ in length")
    actions = [_ACTION_OF_CODE[code] for code in codes]
    return tuple(map(WindowEvent, event_ids, item_ids, actions, [base + offset for offset in offsets]))


_ACTION_OF_CODE = {code: action for action, code in ACTION_CODES.items()}
