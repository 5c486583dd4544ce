"""The record's prediction of what the user does next, whatever the item, and when.

Per window the model serves the probability of each action type for the next event, the
seconds until it at ``contract.GAP_QUANTILE_LEVELS``, and per action type the weights of the
window's events from the same occlusion that explains items: an event's share of the drop in
the action's log-probability when the event is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from contract import ACTIONS, GAP_QUANTILE_LEVELS
from stream.explain import MIN_WEIGHT, strongest_events
from stream.records import ActionDriver, NextEvent, Window
from stream.scored_batch import ScoredBatch
from stream.wording import ItemTitles, deed, span

__all__ = ["MAX_DRIVERS", "QUANTILE_NAMES", "actions_if_next", "next_events"]

MAX_DRIVERS: Final = 3
#: Keys of ``seconds_until``: "p10" for the 0.1 quantile...
QUANTILE_NAMES: Final = tuple(f"p{round(level * 100)}" for level in GAP_QUANTILE_LEVELS)
# The action a shop acts on: the sentence always says how likely it is and what drove it.
_CONVERSION: Final = "purchase"
_NOUNS: Final = {
    "view": "a view",
    "click": "a click",
    "add_to_cart": "an add to cart",
    "purchase": "a purchase",
}


def actions_if_next(scored: ScoredBatch, columns: np.ndarray) -> list[list[dict[str, float] | None]]:
    """Per published item (``columns`` [B, n] into the served ones), the probability of each
    action if it is the next item; None throughout where the version predates it."""
    if scored.item_actions is None:
        return [[None] * columns.shape[1] for _ in range(columns.shape[0])]
    picked = np.take_along_axis(scored.item_actions, columns[:, :, None], axis=1)
    picked = np.round(picked.astype(np.float64), 4)
    return [[dict(zip(ACTIONS, item, strict=True)) for item in row] for row in picked.tolist()]


def next_events(
    windows: Sequence[Window], scored: ScoredBatch, titles: ItemTitles, now_ms: int
) -> list[NextEvent | None]:
    """The ``next_event`` of each window's record; None where the version predates it."""
    if scored.next_actions is None or scored.gap_quantiles is None or scored.action_attributions is None:
        return [None] * len(windows)
    length = scored.action_attributions.shape[2]
    strongest, top_weights = strongest_events(windows, scored.action_attributions, MAX_DRIVERS)
    top_weights = np.round(top_weights.astype(np.float64), 4)
    probabilities = np.round(scored.next_actions.astype(np.float64), 4).tolist()
    # The record promises seconds from now, never negative, whichever version served them.
    quantiles = np.round(np.maximum(scored.gap_quantiles.astype(np.float64), 0.0), 1).tolist()
    records: list[NextEvent | None] = []
    for window, row_probabilities, row_quantiles, row_columns, row_weights in zip(
        windows, probabilities, quantiles, strongest.tolist(), top_weights.tolist(), strict=True
    ):
        offset = len(window) - length
        drivers: dict[str, list[ActionDriver]] = {
            action: [
                {
                    "event_id": (event := window[offset + column]).event_id,
                    "item_id": event.item_id,
                    "action": event.action,
                    "ts_ms": event.ts_ms,
                    "weight": weight,
                }
                for column, weight in zip(columns, action_weights, strict=True)
                if weight >= MIN_WEIGHT
            ]
            for action, columns, action_weights in zip(ACTIONS, row_columns, row_weights, strict=True)
        }
        actions = dict(zip(ACTIONS, row_probabilities, strict=True))
        seconds = dict(zip(QUANTILE_NAMES, row_quantiles, strict=True))
        records.append(
            {
                "actions": actions,
                "seconds_until": seconds,
                "drivers": drivers,
                "sentence": _sentence(actions, seconds, drivers[_CONVERSION], titles, now_ms),
            }
        )
    return records


def _sentence(
    actions: dict[str, float],
    seconds: dict[str, float],
    purchase_drivers: Sequence[ActionDriver],
    titles: ItemTitles,
    now_ms: int,
) -> str:
    likeliest = max(actions, key=actions.__getitem__)
    text = f"Next most likely {_NOUNS[likeliest]} ({actions[likeliest]:.0%})"
    if likeliest != _CONVERSION:
        text += f"; a purchase {actions[_CONVERSION]:.0%}"
    if purchase_drivers:
        first = purchase_drivers[0]
        did = deed(first["action"], titles.title(first["item_id"]))
        text += f", mostly because you {did} ({first['weight']:.0%} of the evidence)"
    median = seconds.get("p50")
    if median is not None:
        text += f"; half the time within {span(median)}"
    return text + "."
