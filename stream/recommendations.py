"""Build and encode the output records: one recommendation per scored user."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

from stream.explain import explain_batch
from stream.inference import ScoredBatch
from stream.records import Recommendation, UserUpdate, Watermark, recommendation_id

__all__ = ["build_recommendations", "encode_recommendation", "watermark"]


def build_recommendations(
    updates: Sequence[UserUpdate],
    scored: ScoredBatch,
    *,
    model_name: str,
    top_k: int,
    now_ms: int,
) -> list[Recommendation]:
    """One record per update, from row b of ``scored``, with the ``top_k`` best of the
    items the model served."""
    item_ids = [items[:top_k] for items in scored.items]
    explanations = explain_batch([update.window for update in updates], item_ids, scored.attributions)
    scores = np.round(scored.scores[:, :top_k].astype(np.float64), 6).tolist()
    return [
        {
            "recommendation_id": recommendation_id(update.user_id, update.trigger_event_id),
            "user_id": update.user_id,
            "trigger_event_id": update.trigger_event_id,
            "generated_at_ms": now_ms,
            "source": "model",
            "model_name": model_name,
            "model_version": scored.model_version,
            "watermark": watermark(update),
            "items": [
                {"item_id": item_id, "rank": rank, "score": score, "explanation": explanation}
                for rank, (item_id, score, explanation) in enumerate(
                    zip(items, row_scores, row_explanations, strict=True), start=1
                )
            ],
        }
        for update, items, row_scores, row_explanations in zip(
            updates, item_ids, scores, explanations, strict=True
        )
    ]


def watermark(update: UserUpdate) -> Watermark:
    return {
        "event_ts_ms": update.window[-1].ts_ms,
        "event_id": update.window[-1].event_id,
        "source_partition": update.source_partition,
        "source_offset": update.source_offset,
    }


def encode_recommendation(recommendation: Recommendation) -> bytes:
    return orjson.dumps(recommendation)
