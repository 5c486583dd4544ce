"""Turn model attributions over window positions into explanation records and a sentence.

The weights come from the model's leave-one-event-out occlusion, so an event's weight is the
share of the item's score that disappears when that event is removed from the window.
Explanations of a whole scored batch are selected at once with numpy; only the cited events
become Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from stream.records import ExplainedEvent, Explanation, Window

__all__ = ["MAX_EVENTS", "MIN_WEIGHT", "explain_batch"]

MAX_EVENTS: Final = 5
MIN_WEIGHT: Final = 0.01
_DEEDS: Final = {
    "view": "viewed {}",
    "click": "clicked {}",
    "add_to_cart": "added {} to your cart",
    "purchase": "bought {}",
}


def explain_batch(
    windows: Sequence[Window], item_ids: Sequence[Sequence[str]], attributions: np.ndarray
) -> list[list[Explanation]]:
    """Explanations of ``item_ids[b][k]`` for window b.

    ``attributions[b, k, j]`` weighs event ``windows[b][len(windows[b]) - L + j]`` (L columns:
    the model sees each window's newest L events, left-padded). Each explanation cites at most
    ``MAX_EVENTS`` events of weight at least ``MIN_WEIGHT``, strongest first, newer first
    among equals.
    """
    n_items = max((len(items) for items in item_ids), default=0)
    weights = attributions[:, :n_items, :]
    length = weights.shape[2]
    # Padding (left of a shorter window) is never evidence, whatever a model returns for it.
    lengths = np.fromiter((len(window) for window in windows), dtype=np.int64, count=len(windows))
    padding = np.arange(length)[None, :] < (length - lengths)[:, None]  # [B, L]
    weights = np.where(padding[:, None, :], np.float32(0), weights)
    # Stable sort of the reversed columns: equal weights keep newest-first order.
    strongest = length - 1 - np.argsort(-weights[:, :, ::-1], axis=2, kind="stable")[:, :, :MAX_EVENTS]
    top_weights = np.take_along_axis(weights, strongest, axis=2)
    # Sorted strongest first, so the cited events of an item are a prefix of its row: only
    # they become Python objects, flattened in (window, item, rank) order.
    cited = top_weights >= MIN_WEIGHT
    cited_counts = cited.sum(axis=2).tolist()
    cited_columns = strongest[cited].tolist()
    cited_weights = np.round(top_weights[cited].astype(np.float64), 4).tolist()
    batch = []
    start = 0
    for window, items, counts in zip(windows, item_ids, cited_counts, strict=True):
        offset = len(window) - length
        explanations: list[Explanation] = []
        for k, count in enumerate(counts):  # every item column, so ``start`` stays aligned
            end = start + count
            if k >= len(items):
                start = end
                continue
            item_id = items[k]
            drivers: list[ExplainedEvent] = [
                {
                    "event_id": (event := window[offset + column]).event_id,
                    "item_id": event.item_id,
                    "action": event.action,
                    "ts_ms": event.ts_ms,
                    "weight": weight,
                }
                for column, weight in zip(cited_columns[start:end], cited_weights[start:end], strict=True)
            ]
            start = end
            explanations.append({"sentence": _sentence(item_id, drivers), "events": drivers})
        batch.append(explanations)
    return batch


def _sentence(item_id: str, drivers: Sequence[ExplainedEvent]) -> str:
    if not drivers:
        return f"{item_id}: no single recent event drives this; it reflects your activity overall."
    first = drivers[0]
    text = f"{item_id}: mostly because you {_deed(first, item_id)} ({first['weight']:.0%} of the evidence)"
    if len(drivers) > 1:
        text += f", also because you {_deed(drivers[1], item_id)} ({drivers[1]['weight']:.0%})"
    return text + "."


def _deed(event: ExplainedEvent, item_id: str) -> str:
    return _DEEDS[event["action"]].format("it" if event["item_id"] == item_id else event["item_id"])
