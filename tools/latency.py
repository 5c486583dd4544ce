"""Event-to-recommendation latency, measured from outside the worker (demo, benchmark).

An event counts as served by the first recommendation of its user whose triggering event was
sent at or after it: that record is the first to reflect the event.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["event_to_recommendation_ms", "percentiles"]


def event_to_recommendation_ms(
    sent: Iterable[tuple[str, str, float]],
    published: Mapping[str, Sequence[tuple[str, float]]],
) -> list[float]:
    """Latency of each served event (grouped by user).

    sent: ``(user_id, event_id, sent_ms)`` in send order; published: user id ->
    ``(trigger_event_id, published_ms)`` of each recommendation. Events of users whose later
    recommendations never arrived are left out.
    """
    by_user: defaultdict[str, list[tuple[str, float]]] = defaultdict(list)
    for user_id, event_id, sent_ms in sent:
        by_user[user_id].append((event_id, sent_ms))
    latencies = []
    for user_id, events in by_user.items():
        position = {event_id: index for index, (event_id, _) in enumerate(events)}
        triggers = sorted((position[t], at) for t, at in published.get(user_id, ()) if t in position)
        cursor = 0
        for index, (_, sent_ms) in enumerate(events):
            while cursor < len(triggers) and triggers[cursor][0] < index:
                cursor += 1
            if cursor < len(triggers):
                latencies.append(triggers[cursor][1] - sent_ms)
    return latencies


def percentiles(values: Sequence[float], cuts: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., ...}`` of ``values`` (inclusive method); NaN with fewer than two values."""
    if len(values) < 2:
        return {f"p{cut}": float("nan") for cut in cuts}
    quantiles = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p{cut}": quantiles[cut - 1] for cut in cuts}
