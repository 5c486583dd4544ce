"""What the model answered for a batch of windows, checked against the request before the
stream uses it: a row can never hold another user's items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from tritonclient.utils import InferenceServerException

from contract import (
    ACTION_ATTRIBUTIONS,
    ACTIONS,
    GAP_QUANTILE_LEVELS,
    GAP_QUANTILES,
    ITEM_ACTIONS,
    ITEM_ORIGINS,
    NEXT_ACTIONS,
    POPULARITY,
    SIGNALS,
    SIMILARITIES,
    TensorSpec,
)

__all__ = ["MALFORMED_RESPONSE", "OPTIONAL_OUTPUTS", "ScoredBatch", "checked_response"]

#: Status of the error raised for a response that does not fit its request.
MALFORMED_RESPONSE: Final = "MALFORMED_RESPONSE"


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """Model output for a batch of windows, row b for window b.

    ``attributions[b, k, j]`` weighs, for item k, event ``window[len(window) - L + j]`` of
    window b, where L is the model's window length (columns left of a shorter window are
    padding and weigh 0).
    """

    model_version: str
    items: list[list[str]]  # [B][K] item ids, best first
    scores: np.ndarray  # float32 [B, K]
    attributions: np.ndarray  # float32 [B, K, L]
    # None where the served version predates them (see ModelShape.outputs).
    similarities: np.ndarray | None = None  # float32 [B, K, K]
    signals: np.ndarray | None = None  # int8 [B, K, L] contract.SIGNAL_CODES
    popularity: np.ndarray | None = None  # float32 [B, K]
    item_origins: np.ndarray | None = None  # int8 [B, K] contract.LEARNED_ORIGIN or TEXT_ORIGIN
    next_actions: np.ndarray | None = None  # float32 [B, A] contract.ACTIONS order
    item_actions: np.ndarray | None = None  # float32 [B, K, A] given item k as the next one
    gap_quantiles: np.ndarray | None = None  # float32 [B, Q] seconds, contract.GAP_QUANTILE_LEVELS
    action_attributions: np.ndarray | None = None  # float32 [B, A, L]

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def concatenate(parts: Sequence[ScoredBatch]) -> ScoredBatch:
        def joined(name: str) -> np.ndarray | None:
            arrays = [getattr(part, name) for part in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return ScoredBatch(
            model_version=parts[0].model_version,
            items=[row for part in parts for row in part.items],
            scores=np.concatenate([part.scores for part in parts]),
            attributions=np.concatenate([part.attributions for part in parts]),
            **{name: joined(name) for name in OPTIONAL_OUTPUTS},
        )


# Outputs a response may lack: versions exported before they were in the contract.
OPTIONAL_OUTPUTS: Final[dict[str, TensorSpec]] = {
    "similarities": SIMILARITIES,
    "signals": SIGNALS,
    "popularity": POPULARITY,
    "item_origins": ITEM_ORIGINS,
    "next_actions": NEXT_ACTIONS,
    "item_actions": ITEM_ACTIONS,
    "gap_quantiles": GAP_QUANTILES,
    "action_attributions": ACTION_ATTRIBUTIONS,
}


def checked_response(
    rows: int,
    version: str,
    top_items: list[str],
    scores: np.ndarray | None,
    attributions: np.ndarray | None,
    optional: Mapping[str, np.ndarray | None] | None = None,
) -> ScoredBatch:
    """The response to a request of ``rows`` windows, split into rows by the response's own
    top-k (a version rolled out since the start may serve another number of items); anything
    that does not fit the request is refused, so a row can never hold another user's items.
    ``optional``: the ``OPTIONAL_OUTPUTS`` the version served, by field name."""
    if scores is None or attributions is None or scores.ndim != 2 or attributions.ndim != 3:
        raise InferenceServerException(
            msg="the response lacks scores or attributions", status=MALFORMED_RESPONSE
        )
    top_k, columns, actions = scores.shape[1], attributions.shape[2], len(ACTIONS)
    shapes = {
        "similarities": (rows, top_k, top_k),
        "signals": (rows, top_k, columns),
        "popularity": (rows, top_k),
        "item_origins": (rows, top_k),
        "next_actions": (rows, actions),
        "item_actions": (rows, top_k, actions),
        "gap_quantiles": (rows, len(GAP_QUANTILE_LEVELS)),
        "action_attributions": (rows, actions, columns),
    }
    served = {name: array for name, array in (optional or {}).items() if array is not None}
    expected = {"scores": (scores, (rows, top_k)), "attributions": (attributions, (rows, top_k, columns))}
    expected |= {name: (array, shapes[name]) for name, array in served.items()}
    wrong = [f"{name} {array.shape}" for name, (array, shape) in expected.items() if array.shape != shape]
    if wrong or len(top_items) != rows * top_k:
        raise InferenceServerException(
            msg=f"a response for {rows} windows of {top_k} items has {', '.join(wrong) or 'shapes that fit'} "
            f"and {len(top_items)} items",
            status=MALFORMED_RESPONSE,
        )
    return ScoredBatch(
        model_version=version,
        items=[top_items[row * top_k : (row + 1) * top_k] for row in range(rows)],
        scores=scores,
        attributions=attributions,
        **served,
    )
