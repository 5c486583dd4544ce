"""Turn model attributions over window positions into explanation records and a sentence.

The weights come from the model's leave-one-event-out occlusion, so an event's weight is the
share of the item's score that disappears when that event is removed from the window.
Explanations of a whole scored batch are selected at once with numpy; only the cited events
become Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from contract import HEAD_SHARE, SIGNAL_CODES, SIGNAL_KINDS
from stream.records import ExplainedEvent, Explanation, ItemSource, Window
from stream.wording import ItemTitles, reason_sentence

__all__ = ["MAX_EVENTS", "MIN_WEIGHT", "ItemFacts", "explain_batch", "strongest_events"]

MAX_EVENTS: Final = 5
MIN_WEIGHT: Final = 0.01
_CONTEXT_CODE: Final = SIGNAL_CODES["context"]


@dataclass(frozen=True)
class ItemFacts:
    """What the model says about each served item besides its weights, row b for window b;
    None where the served version predates it."""

    signals: np.ndarray | None  # int8 [B, K, L] contract.SIGNAL_CODES
    popularity: np.ndarray | None  # float32 [B, K] share of the catalogue at least as popular


def strongest_events(windows: Sequence[Window], weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` strongest columns of ``weights`` [B, X, L] for each of X outcomes, newer first
    among equals, and their weights: [B, X, n] each. Padding (left of a shorter window) is never
    evidence, whatever a model returns for it."""
    length = weights.shape[2]
    lengths = np.fromiter((len(window) for window in windows), dtype=np.int64, count=len(windows))
    padding = np.arange(length)[None, :] < (length - lengths)[:, None]  # [B, L]
    weights = np.where(padding[:, None, :], np.float32(0), weights)
    # Stable sort of the reversed columns: equal weights keep newest-first order.
    strongest = length - 1 - np.argsort(-weights[:, :, ::-1], axis=2, kind="stable")[:, :, :n]
    return strongest, np.take_along_axis(weights, strongest, axis=2)


def explain_batch(
    windows: Sequence[Window],
    item_ids: Sequence[Sequence[str]],
    sources: Sequence[Sequence[ItemSource]],
    attributions: np.ndarray,
    facts: ItemFacts,
    titles: ItemTitles,
    now_ms: int,
) -> list[list[Explanation]]:
    """Explanations of ``item_ids[b][k]``, placed by ``sources[b][k]``, for window b.

    ``attributions[b, k, j]`` (and ``facts.signals[b, k, j]``) concern event
    ``windows[b][len(windows[b]) - L + j]`` (L columns: the model sees each window's newest
    L events, left-padded). Each explanation cites at most ``MAX_EVENTS`` events of weight at
    least ``MIN_WEIGHT``, strongest first, newer first among equals.
    """
    n_items = max((len(items) for items in item_ids), default=0)
    length = attributions.shape[2]
    strongest, top_weights = strongest_events(windows, attributions[:, :n_items, :], MAX_EVENTS)
    # Sorted strongest first, so the cited events of an item are a prefix of its row: only
    # they become Python objects, flattened in (window, item, rank) order.
    cited = top_weights >= MIN_WEIGHT
    cited_counts = cited.sum(axis=2).tolist()
    cited_columns = strongest[cited].tolist()
    cited_weights = np.round(top_weights[cited].astype(np.float64), 4).tolist()
    cited_signals = (
        [_CONTEXT_CODE] * len(cited_columns)
        if facts.signals is None
        else np.take_along_axis(facts.signals[:, :n_items, :], strongest, axis=2)[cited].tolist()
    )
    popular = (
        np.zeros((len(windows), n_items), dtype=bool)
        if facts.popularity is None
        else facts.popularity[:, :n_items] <= HEAD_SHARE
    ).tolist()
    batch = []
    start = 0
    for window, items, row_sources, counts, row_popular in zip(
        windows, item_ids, sources, cited_counts, popular, strict=True
    ):
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
                    "signal": "same_item" if event.item_id == item_id else SIGNAL_KINDS[code - 1],
                }
                for column, weight, code in zip(
                    cited_columns[start:end], cited_weights[start:end], cited_signals[start:end], strict=True
                )
            ]
            start = end
            reason = _reason(row_sources[k], drivers, row_popular[k])
            sentence = reason_sentence(
                item_id, reason, drivers if reason in SIGNAL_KINDS else (), titles, now_ms
            )
            explanations.append({"sentence": sentence, "reason": reason, "events": drivers})
        batch.append(explanations)
    return batch


def _reason(source: ItemSource, drivers: Sequence[ExplainedEvent], popular: bool) -> str:
    if source in ("exploration", "cold_start"):
        return source
    if drivers:
        return drivers[0]["signal"]
    return "popular" if popular else "overall"
