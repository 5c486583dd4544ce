"""What ``nextaction watch`` shows, folded from the records it reads: the latest
recommendations with their explanations, dead letters by reason, and end-to-end latency.

Pure: records in, state out, no Kafka and no terminal, so that it is tested alone. Latency is
the recommendation record's timestamp minus its trigger event record's timestamp (both set by
the broker or the producer, so it holds across machines whose clocks agree with the broker's);
the two are matched by the trigger's input coordinates, which every recommendation carries in
its watermark. Either record may be read first.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tools.latency import percentiles

__all__ = ["ShownItem", "ShownRecommendation", "WatchState", "WatchedRecord"]

RecordKind = Literal["event", "recommendation", "dead_letter"]
_DEAD_LETTER_REASON = "dlq.reason"


@dataclass(frozen=True, slots=True)
class WatchedRecord:
    """A record as the watch reads it, whichever client read it."""

    kind: RecordKind
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class ShownItem:
    rank: int
    name: str  # the catalogue's title, else the item id
    source: str
    sentence: str


@dataclass(frozen=True, slots=True)
class ShownRecommendation:
    user_id: str
    trigger_event_id: str
    source: str  # model or fallback
    model_version: str | None
    items: tuple[ShownItem, ...]


class WatchState:
    """Fold records with :meth:`fold`; read the view from the attributes and :meth:`latency`.

    ``shown`` recommendations are kept, each with its first ``items_shown`` items; latencies
    are kept for ``latency_window_s`` of recommendation time. Events and recommendations
    waiting for their other half are bounded by ``pending_limit`` each (oldest dropped), so
    a long watch holds constant memory.
    """

    def __init__(
        self,
        *,
        shown: int = 5,
        items_shown: int = 3,
        latency_window_s: float = 60.0,
        pending_limit: int = 100_000,
    ) -> None:
        self.events = 0
        self.recommendations = 0
        self.unreadable = 0  # recommendation records that are not the documented JSON
        self.dead_letters: Counter[str] = Counter()
        self.recent: deque[ShownRecommendation] = deque(maxlen=shown)
        self._items_shown = items_shown
        self.latency_window_s = latency_window_s
        self._pending_limit = pending_limit
        self._latencies: deque[tuple[int, float]] = deque()  # (recommendation timestamp, latency)
        self._newest_ms = 0
        self._event_ms: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._waiting_ms: OrderedDict[tuple[int, int], int] = OrderedDict()

    def fold(self, record: WatchedRecord) -> None:
        if record.kind == "event":
            self.events += 1
            coordinates = (record.partition, record.offset)
            self._match(self._waiting_ms, self._event_ms, coordinates, record.timestamp_ms)
        elif record.kind == "dead_letter":
            self.dead_letters[_reason(record.headers)] += 1
        else:
            self._fold_recommendation(record)

    def latency(self) -> dict[str, float]:
        """``p50`` and ``p99`` in ms over the window (NaN with fewer than two), and ``count``."""
        values = [latency for _, latency in self._latencies]
        return {**percentiles(values, (50, 99)), "count": float(len(values))}

    def _fold_recommendation(self, record: WatchedRecord) -> None:
        try:
            doc = orjson.loads(record.value)
            shown = self._shown(doc)
            trigger = (int(doc["watermark"]["source_partition"]), int(doc["watermark"]["source_offset"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.unreadable += 1
            return
        self.recommendations += 1
        self.recent.append(shown)
        self._match(self._event_ms, self._waiting_ms, trigger, record.timestamp_ms, recommendation=True)

    def _shown(self, doc: dict[str, Any]) -> ShownRecommendation:
        items = tuple(
            ShownItem(
                rank=int(item["rank"]),
                name=str(item.get("title") or item["item_id"]),
                source=str(item.get("source", "model")),
                sentence=str(item["explanation"]["sentence"]),
            )
            for item in doc["items"][: self._items_shown]
        )
        return ShownRecommendation(
            user_id=str(doc["user_id"]),
            trigger_event_id=str(doc["trigger_event_id"]),
            source=str(doc["source"]),
            model_version=doc.get("model_version"),
            items=items,
        )

    def _match(
        self,
        others: OrderedDict[tuple[int, int], int],
        mine: OrderedDict[tuple[int, int], int],
        key: tuple[int, int],
        timestamp_ms: int,
        *,
        recommendation: bool = False,
    ) -> None:
        """Pair this half with the other one already read, or wait for it."""
        other_ms = others.pop(key, None)
        if other_ms is None:
            mine[key] = timestamp_ms
            if len(mine) > self._pending_limit:
                mine.popitem(last=False)
            return
        event_ms, recommendation_ms = (other_ms, timestamp_ms) if recommendation else (timestamp_ms, other_ms)
        self._add_latency(recommendation_ms, recommendation_ms - event_ms)

    def _add_latency(self, at_ms: int, latency_ms: float) -> None:
        # Recommendations of several partitions arrive slightly out of timestamp order.
        self._newest_ms = max(self._newest_ms, at_ms)
        self._latencies.append((at_ms, latency_ms))
        while self._latencies[0][0] < self._newest_ms - self.latency_window_s * 1000:
            self._latencies.popleft()


def _reason(headers: Sequence[tuple[str, bytes]]) -> str:
    for name, value in headers:
        if name == _DEAD_LETTER_REASON:
            return value.decode(errors="replace")
    return "unknown"
