"""What users get while Triton is out: recommendations from what the stream itself has seen.

Two statistics, learned from every valid event in batch order and bounded in memory:
which items follow which in users' histories, and what is popular now (counts that halve
every ``_HALF_LIFE_EVENTS`` events). A user's items are those that most often followed their
newest few events, nearer events weighing more, then the popular ones. Each item's
explanation cites the window events its score came from, weighted by their share of it, so
the explanation is exactly how the item was chosen. The statistics are the worker's own
(they start empty and are not in the changelog): a fallback needs to be recent, not complete.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from typing import Final

from stream.recommendations import watermark
from stream.records import (
    RECOMMENDATION_SCHEMA_VERSION,
    ExplainedEvent,
    Explanation,
    Recommendation,
    RecommendedItem,
    UserUpdate,
    WindowEvent,
    recommendation_id,
)
from stream.wording import ItemTitles, reason_sentence

__all__ = ["FallbackRecommender"]

_RECENT_EVENTS: Final = 5  # of a user's window, newest first, whose followers are candidates
_MAX_ITEMS: Final = 20_000  # items whose followers are kept (least recently followed go first)
_MAX_FOLLOWERS: Final = 20  # followers kept per item
_HALF_LIFE_EVENTS: Final = 20_000
_POPULAR_WEIGHT: Final = 0.1  # popularity's weight against a follower share of 1


class FallbackRecommender:
    def __init__(self, titles: ItemTitles | None = None) -> None:
        self._titles = titles if titles is not None else ItemTitles()
        self._followers: OrderedDict[str, Counter[str]] = OrderedDict()
        self._popularity: dict[str, float] = defaultdict(float)
        self._increment = 1.0  # grows so that older counts weigh half every half-life

    def learn(self, previous: WindowEvent | None, arrivals: Iterable[WindowEvent]) -> None:
        """A user's new events, in order, after ``previous`` (their window's newest before)."""
        for event in arrivals:
            self._count_popular(event.item_id)
            if previous is not None and previous.item_id != event.item_id:
                self._count_follower(previous.item_id, event.item_id)
            previous = event

    def recommend(
        self, updates: Sequence[UserUpdate], *, model_name: str, top_k: int, now_ms: int | None = None
    ) -> list[Recommendation]:
        """One record per update, ``"source": "fallback"`` and no model version."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        popular = self._popular_shares(top_k + 1)
        return [
            {
                "schema_version": RECOMMENDATION_SCHEMA_VERSION,
                "recommendation_id": recommendation_id(update.user_id, update.trigger_event_id),
                "user_id": update.user_id,
                "trigger_event_id": update.trigger_event_id,
                "generated_at_ms": now_ms,
                "source": "fallback",
                "model_name": model_name,
                "model_version": None,
                "watermark": watermark(update),
                "items": self._items(update, popular, top_k, now_ms),
                "next_event": None,
            }
            for update in updates
        ]

    def _items(
        self, update: UserUpdate, popular: list[tuple[str, float]], top_k: int, now_ms: int
    ) -> list[RecommendedItem]:
        newest_item = update.window[-1].item_id
        scores: dict[str, float] = defaultdict(float)
        evidence: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        recent = update.window[-_RECENT_EVENTS:]
        for age, position in enumerate(reversed(range(len(recent)))):
            followers = self._followers.get(recent[position].item_id)
            if not followers:
                continue
            total = sum(followers.values())
            for item, count in followers.items():
                if item != newest_item:
                    share = count / total / (age + 1)
                    scores[item] += share
                    evidence[item][position] += share
        for item, share in popular:
            if item != newest_item:
                scores[item] += _POPULAR_WEIGHT * share
        ranked = sorted(scores.items(), key=lambda entry: (-entry[1], entry[0]))[:top_k]
        return [
            {
                "item_id": item,
                "title": self._titles.get(item),
                "rank": rank,
                "score": round(score, 6),
                "source": "fallback",
                "explanation": _explanation(
                    item, score, evidence.get(item, {}), recent, self._titles, now_ms
                ),
                "actions_if_next": None,
            }
            for rank, (item, score) in enumerate(ranked, start=1)
        ]

    def _count_popular(self, item_id: str) -> None:
        self._popularity[item_id] += self._increment
        self._increment *= 2 ** (1 / _HALF_LIFE_EVENTS)
        if self._increment > 1e6:  # rescaled long before floats lose precision
            for item in self._popularity:
                self._popularity[item] /= self._increment
            self._increment = 1.0
        if len(self._popularity) > 2 * _MAX_ITEMS:
            kept = heapq.nlargest(_MAX_ITEMS, self._popularity.items(), key=lambda entry: entry[1])
            self._popularity = defaultdict(float, kept)

    def _count_follower(self, item_id: str, follower: str) -> None:
        followers = self._followers.get(item_id)
        if followers is None:
            followers = self._followers[item_id] = Counter()
            if len(self._followers) > _MAX_ITEMS:
                self._followers.popitem(last=False)
        else:
            self._followers.move_to_end(item_id)
        followers[follower] += 1
        if len(followers) > 2 * _MAX_FOLLOWERS:
            self._followers[item_id] = Counter(dict(followers.most_common(_MAX_FOLLOWERS)))

    def _popular_shares(self, count: int) -> list[tuple[str, float]]:
        total = sum(self._popularity.values())
        if not total:
            return []
        popular = heapq.nlargest(count, self._popularity.items(), key=lambda entry: entry[1])
        return [(item, weight / total) for item, weight in popular]


def _explanation(
    item_id: str,
    score: float,
    evidence: dict[int, float],
    recent: Sequence[WindowEvent],
    titles: ItemTitles,
    now_ms: int,
) -> Explanation:
    """Followers of the user's events are sequence patterns the stream saw itself; the rest is
    what is popular in it right now."""
    cited: list[ExplainedEvent] = [
        {
            "event_id": (event := recent[position]).event_id,
            "item_id": event.item_id,
            "action": event.action,
            "ts_ms": event.ts_ms,
            "weight": round(share / score, 4),
            "signal": "sequence_pattern",
        }
        for position, share in sorted(evidence.items(), key=lambda entry: (-entry[1], -entry[0]))
    ]
    reason = "sequence_pattern" if cited else "popular_now"
    sentence = reason_sentence(item_id, reason, cited, titles, now_ms)
    return {
        "sentence": f"{sentence[:-1]} (the model is unavailable; this is a fallback).",
        "reason": reason,
        "events": cited,
    }
