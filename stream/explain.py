"""Turn model attributions over window positions into explanation records and a sentence.

The weights come from the model's leave-one-event-out occlusion, so an event's weight is the
share of the item's score that disappears when that event is removed from the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from stream.records import ExplainedEvent, Explanation
from stream.window import Window

__all__ = ["explain"]

MAX_EVENTS: Final = 5
MIN_WEIGHT: Final = 0.01
_DEEDS: Final = {
    "view": "viewed {}",
    "click": "clicked {}",
    "add_to_cart": "added {} to your cart",
    "purchase": "bought {}",
}


def explain(item_id: str, window: Window, weights: Sequence[float]) -> Explanation:
    """``weights[i]`` belongs to ``window[-len(weights):][i]`` (the model sees the window tail)."""
    tail = window[len(window) - len(weights) :]
    ranked = sorted(
        (
            ExplainedEvent(e.event_id, e.item_id, e.action, e.ts_ms, round(w, 4))
            for e, w in zip(tail, weights, strict=True)
            if w >= MIN_WEIGHT
        ),
        key=lambda e: (-e.weight, -e.ts_ms),
    )[:MAX_EVENTS]
    return Explanation(sentence=_sentence(item_id, ranked), events=tuple(ranked))


def _sentence(item_id: str, drivers: Sequence[ExplainedEvent]) -> str:
    if not drivers:
        return f"{item_id}: no single recent event drives this; it reflects your activity overall."
    first = drivers[0]
    text = f"{item_id}: mostly because you {_deed(first, item_id)} ({first.weight:.0%} of the evidence)"
    if len(drivers) > 1:
        text += f", also because you {_deed(drivers[1], item_id)} ({drivers[1].weight:.0%})"
    return text + "."


def _deed(event: ExplainedEvent, item_id: str) -> str:
    return _DEEDS[event.action].format("it" if event.item_id == item_id else event.item_id)
