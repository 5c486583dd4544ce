"""Turn model attributions over window positions into explanation records and a sentence.

The weights come from the model's leave-one-event-out occlusion, so an event's weight is the
share of the item's score that disappears when that event is removed from the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from stream.records import ExplainedEvent, Explanation
from stream.window import Window

__all__ = ["explain_items"]

MAX_EVENTS: Final = 5
MIN_WEIGHT: Final = 0.01
_DEEDS: Final = {
    "view": "viewed {}",
    "click": "clicked {}",
    "add_to_cart": "added {} to your cart",
    "purchase": "bought {}",
}


def explain_items(
    item_ids: Sequence[str], window: Window, attributions: Sequence[Sequence[float]]
) -> list[Explanation]:
    """One explanation per item: ``attributions[k][i]`` weighs event ``window[-n:][i]`` for
    item k, where n is the row length (the model sees the window's tail)."""
    weights = np.asarray(attributions, dtype=np.float64).reshape(len(item_ids), -1)
    tail = window[len(window) - weights.shape[1] :]
    # All cited (item, event) pairs at once; usually a handful per item.
    rows, columns = np.nonzero(weights >= MIN_WEIGHT)
    cited: list[list[ExplainedEvent]] = [[] for _ in item_ids]
    for row, column, weight in zip(
        rows.tolist(), columns.tolist(), weights[rows, columns].tolist(), strict=True
    ):
        event = tail[column]
        cited[row].append(
            ExplainedEvent(event.event_id, event.item_id, event.action, event.ts_ms, round(weight, 4))
        )
    explanations = []
    for item_id, drivers in zip(item_ids, cited, strict=True):
        drivers.sort(key=_strongest_newest_first)
        del drivers[MAX_EVENTS:]
        explanations.append(Explanation(sentence=_sentence(item_id, drivers), events=tuple(drivers)))
    return explanations


def _strongest_newest_first(event: ExplainedEvent) -> tuple[float, int]:
    return -event.weight, -event.ts_ms


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
