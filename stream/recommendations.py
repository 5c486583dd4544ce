"""Build and encode output records: recommendations and dead-letter headers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

from stream.explain import explain_batch
from stream.inference import ScoredBatch
from stream.records import Recommendation, recommendation_id
from stream.validation import InvalidEvent
from stream.window import Window

__all__ = ["build_recommendations", "dead_letter_headers", "encode_recommendation"]


def build_recommendations(
    requests: Sequence[tuple[str, str, Window]],
    scored: ScoredBatch,
    *,
    model_name: str,
    top_k: int,
    now_ms: int,
) -> list[Recommendation]:
    """One record per ``(user_id, trigger_event_id, window)``, from row b of ``scored``."""
    item_ids = [items[:top_k] for items in scored.items]
    explanations = explain_batch([window for _, _, window in requests], item_ids, scored.attributions)
    scores = np.round(scored.scores[:, :top_k].astype(np.float64), 6).tolist()
    return [
        {
            "recommendation_id": recommendation_id(user_id, trigger_event_id),
            "user_id": user_id,
            "trigger_event_id": trigger_event_id,
            "generated_at_ms": now_ms,
            "model_name": model_name,
            "model_version": scored.model_version,
            "items": [
                {"item_id": item_id, "rank": rank, "score": score, "explanation": explanation}
                for rank, (item_id, score, explanation) in enumerate(
                    zip(items, row_scores, row_explanations, strict=True), start=1
                )
            ],
        }
        for (user_id, trigger_event_id, _), items, row_scores, row_explanations in zip(
            requests, item_ids, scores, explanations, strict=True
        )
    ]


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
