"""Build and encode the output records: one recommendation per scored user.

The model serves K candidates per window; the published list takes ``top_k`` of them in the
order the deployment's re-ranking policy gives (:mod:`stream.rerank`), and says of each item
which mechanism placed it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from contract import HEAD_SHARE, TEXT_ORIGIN
from stream.explain import ItemFacts, explain_batch
from stream.next_event import actions_if_next, next_events
from stream.records import (
    RECOMMENDATION_SCHEMA_VERSION,
    ItemSource,
    Recommendation,
    UserUpdate,
    Watermark,
    recommendation_id,
)
from stream.rerank import MECHANISMS, RerankPolicy, rerank, row_noise
from stream.scored_batch import ScoredBatch
from stream.wording import ItemTitles

__all__ = ["Presentation", "build_recommendations", "encode_recommendation", "watermark"]

_SEED_MASK = (1 << 64) - 1
# Significant digits, not decimal places: an exploration slot's probability can be far below
# 1e-6, and a published 0 would read as "impossible".
_SCORE_DIGITS = 6


@dataclass(frozen=True)
class Presentation:
    """What the deployment adds to the model's answer: its re-ranking and item titles."""

    policy: RerankPolicy = field(default_factory=RerankPolicy)
    titles: ItemTitles = field(default_factory=ItemTitles)


def _choose(
    scored: ScoredBatch, top_k: int, presentation: Presentation, record_ids: Sequence[str]
) -> tuple[np.ndarray, list[list[ItemSource]]]:
    """Candidate columns [B, n] in publishing order, and the mechanism of each. Exploration
    samples with noise seeded by each record's id: the same trigger gets the same items."""
    batch, served = scored.scores.shape
    n = min(top_k, served)
    policy = presentation.policy
    departs = policy.diversity > 0 or policy.exploration_slots > 0
    if not departs or scored.similarities is None or scored.popularity is None:
        # A version that predates similarities and popularity is published in its own order.
        return np.broadcast_to(np.arange(n), (batch, n)), [["model"] * n for _ in range(batch)]
    seeds = np.fromiter((uuid.UUID(rid).int & _SEED_MASK for rid in record_ids), np.uint64, batch)
    chosen = rerank(
        scored.scores,
        scored.similarities,
        scored.popularity > HEAD_SHARE,
        n,
        policy,
        row_noise(seeds, served),
    )
    names: tuple[ItemSource, ...] = MECHANISMS
    return chosen.columns, [[names[code] for code in row] for row in chosen.mechanisms.tolist()]


def _significant(values: np.ndarray, digits: int) -> list[list[float]]:
    return [[float(f"{value:.{digits}g}") for value in row] for row in values.astype(np.float64).tolist()]


def _mark_cold_start(
    sources: list[list[ItemSource]], columns: np.ndarray, origins: np.ndarray | None
) -> list[list[ItemSource]]:
    """Items whose embedding came from their text are cold-start items, however placed."""
    if origins is None or not origins.any():
        return sources
    from_text = (np.take_along_axis(origins, columns, axis=1) == TEXT_ORIGIN).tolist()
    return [
        ["cold_start" if text else source for source, text in zip(row, texts, strict=True)]
        for row, texts in zip(sources, from_text, strict=True)
    ]


def build_recommendations(
    updates: Sequence[UserUpdate],
    scored: ScoredBatch,
    *,
    model_name: str,
    top_k: int,
    now_ms: int,
    presentation: Presentation,
) -> list[Recommendation]:
    """One record per update, from row b of ``scored``, with ``top_k`` of the items the model
    served."""
    record_ids = [recommendation_id(update.user_id, update.trigger_event_id) for update in updates]
    columns, sources = _choose(scored, top_k, presentation, record_ids)
    sources = _mark_cold_start(sources, columns, scored.item_origins)
    item_ids = [[row[c] for c in picked] for row, picked in zip(scored.items, columns.tolist(), strict=True)]

    def picked(array: np.ndarray | None) -> np.ndarray | None:
        if array is None:
            return None
        index = columns.reshape(columns.shape + (1,) * (array.ndim - 2))
        return np.take_along_axis(array, index, axis=1)

    explanations = explain_batch(
        [update.window for update in updates],
        item_ids,
        sources,
        np.take_along_axis(scored.attributions, columns[:, :, None], axis=1),
        ItemFacts(picked(scored.signals), picked(scored.popularity)),
        presentation.titles,
        now_ms,
    )
    scores = _significant(np.take_along_axis(scored.scores, columns, axis=1), _SCORE_DIGITS)
    titles = presentation.titles
    item_actions = actions_if_next(scored, columns)
    windows_next = next_events([update.window for update in updates], scored, titles, now_ms)
    return [
        {
            "schema_version": RECOMMENDATION_SCHEMA_VERSION,
            "recommendation_id": record_id,
            "user_id": update.user_id,
            "trigger_event_id": update.trigger_event_id,
            "generated_at_ms": now_ms,
            "source": "model",
            "model_name": model_name,
            "model_version": scored.model_version,
            "watermark": watermark(update),
            "items": [
                {
                    "item_id": item_id,
                    "title": titles.get(item_id),
                    "rank": rank,
                    "score": score,
                    "source": source,
                    "explanation": explanation,
                    "actions_if_next": if_next,
                }
                for rank, (item_id, score, source, explanation, if_next) in enumerate(
                    zip(items, row_scores, row_sources, reasons, row_actions, strict=True), start=1
                )
            ],
            "next_event": next_event,
        }
        for update, record_id, items, row_scores, row_sources, reasons, row_actions, next_event in zip(
            updates,
            record_ids,
            item_ids,
            scores,
            sources,
            explanations,
            item_actions,
            windows_next,
            strict=True,
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
