"""Build and encode output records: recommendations and dead-letter headers."""

from __future__ import annotations

import orjson

from stream.explain import explain_items
from stream.inference import ScoredWindow
from stream.records import Recommendation, RecommendedItem, recommendation_id
from stream.validation import InvalidEvent
from stream.window import Window

__all__ = ["build_recommendation", "dead_letter_headers", "encode_recommendation"]


def build_recommendation(
    *,
    user_id: str,
    trigger_event_id: str,
    window: Window,
    scored: ScoredWindow,
    model_name: str,
    top_k: int,
    now_ms: int,
) -> Recommendation:
    item_ids = scored.items[:top_k]
    explanations = explain_items(item_ids, window, scored.attributions[: len(item_ids)])
    scores = [float(score) for score in scored.scores[: len(item_ids)]]
    items = tuple(
        RecommendedItem(item_id=item_id, rank=rank, score=round(score, 6), explanation=explanation)
        for rank, (item_id, score, explanation) in enumerate(
            zip(item_ids, scores, explanations, strict=True), start=1
        )
    )
    return Recommendation(
        recommendation_id=recommendation_id(user_id, trigger_event_id),
        user_id=user_id,
        trigger_event_id=trigger_event_id,
        generated_at_ms=now_ms,
        model_name=model_name,
        model_version=scored.model_version,
        items=items,
    )


def encode_recommendation(recommendation: Recommendation) -> bytes:
    return orjson.dumps(recommendation)


def dead_letter_headers(
    error: InvalidEvent, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The dead-letter record keeps the original key and bytes; why and where travel as headers."""
    return [
        ("dlq.reason", error.reason.encode()),
        ("dlq.detail", error.detail.encode()),
        ("dlq.source.topic", topic.encode()),
        ("dlq.source.partition", str(partition).encode()),
        ("dlq.source.offset", str(offset).encode()),
    ]
