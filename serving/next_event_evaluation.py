"""How well the next event's action type and time are predicted, against baselines that know
only the user's own history or everyone's.

The cases are leave-one-out's (``serving.evaluation``): the validation and test events the item
metrics use. Action type: log loss over ``contract.ACTIONS`` and the AUC of purchase against any
other action; time: the median absolute error of log(1 + seconds) at the predicted median, and
per quantile level the share of next events that came sooner (calibrated: equal to the level).
Baselines: the user's own action frequencies (add-one smoothed towards the global ones) and own
gaps (their median and empirical quantiles), and the global frequencies and gaps of the
training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from contract import ACTIONS, GAP_QUANTILE_LEVELS
from serving.data import UserSequence, encode_windows
from serving.model import NextActionModel
from serving.next_event import gap_seconds, window_profile
from serving.vocab import ItemVocab

__all__ = [
    "NextEventCases",
    "NextEventPrediction",
    "auc",
    "compare_next_event",
    "global_prediction",
    "model_prediction",
    "next_event_cases",
    "next_event_metrics",
    "own_history_prediction",
]

_PURCHASE = ACTIONS.index("purchase")
_LEVELS = np.asarray(GAP_QUANTILE_LEVELS)


@dataclass(frozen=True)
class NextEventCases:
    """Each user's input sequence, and the action (index into ACTIONS) and seconds of the next event."""

    inputs: list[UserSequence]
    actions: np.ndarray  # int64 [N]
    gaps_s: np.ndarray  # float64 [N]

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class NextEventPrediction:
    action_probabilities: np.ndarray  # float64 [N, A]
    gap_quantiles_s: np.ndarray  # float64 [N, Q] at GAP_QUANTILE_LEVELS


def next_event_cases(
    sequences: Sequence[UserSequence], part: Literal["validation", "test"]
) -> NextEventCases:
    """Leave-one-out's cases of ``part``: its inputs and targets, as the item metrics take them."""
    held = 2 if part == "validation" else 1
    evaluated = [seq for seq in sequences if len(seq) >= 3]
    inputs = [seq.head(len(seq) - held) for seq in evaluated]
    targets = [len(seq) - held for seq in evaluated]
    actions = np.array(
        [seq.actions[t] - 1 for seq, t in zip(evaluated, targets, strict=True)], dtype=np.int64
    )
    gaps = [
        (seq.timestamps_ms[t] - seq.timestamps_ms[t - 1]) / 1000
        for seq, t in zip(evaluated, targets, strict=True)
    ]
    return NextEventCases(inputs, actions, np.maximum(np.asarray(gaps, dtype=np.float64), 0.0))


@torch.no_grad()
def model_prediction(
    model: NextActionModel, vocab: ItemVocab, inputs: Sequence[UserSequence], batch_size: int = 256
) -> NextEventPrediction:
    model.eval()
    actions, quantiles = [], []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        width = min(model.config.window, max(len(seq) for seq in batch))
        items, window_actions, gaps = (torch.from_numpy(x) for x in encode_windows(batch, vocab, width))
        hidden = model.newest_hidden(items, window_actions, gaps)
        profiles = window_profile(window_actions, gaps)
        actions.append(torch.softmax(model.action_logits(hidden, profiles), dim=-1).double().numpy())
        quantiles.append(gap_seconds(model.log_gap_quantiles(hidden, profiles)).double().numpy())
    return NextEventPrediction(np.concatenate(actions), np.concatenate(quantiles))


def _action_counts(sequences: Sequence[UserSequence]) -> np.ndarray:
    counts = np.zeros(len(ACTIONS))
    for seq in sequences:
        counts += np.bincount(np.asarray(seq.actions, dtype=np.int64) - 1, minlength=len(ACTIONS))
    return counts


def _gaps_s(seq: UserSequence) -> np.ndarray:
    return np.maximum(np.diff(np.asarray(seq.timestamps_ms, dtype=np.float64)) / 1000, 0.0)


def global_prediction(train: Sequence[UserSequence], n: int) -> NextEventPrediction:
    """Everyone's action shares and gap quantiles in the training data, for ``n`` cases."""
    counts = _action_counts(train) + 1.0
    gaps = np.concatenate([_gaps_s(seq) for seq in train] + [np.zeros(1)])
    quantiles = np.quantile(gaps, _LEVELS)
    return NextEventPrediction(np.tile(counts / counts.sum(), (n, 1)), np.tile(quantiles, (n, 1)))


def own_history_prediction(
    inputs: Sequence[UserSequence], fallback: NextEventPrediction
) -> NextEventPrediction:
    """Each user's own action shares, smoothed with one pseudo-event spread as ``fallback``'s,
    and own gap quantiles (``fallback``'s for a user with no gap yet)."""
    actions = np.stack([_action_counts([seq]) for seq in inputs]) + fallback.action_probabilities
    own_gaps = [_gaps_s(seq) for seq in inputs]
    quantiles = np.stack(
        [
            np.quantile(gaps, _LEVELS) if len(gaps) else default
            for gaps, default in zip(own_gaps, fallback.gap_quantiles_s, strict=True)
        ]
    )
    return NextEventPrediction(actions / actions.sum(axis=1, keepdims=True), quantiles)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half);
    NaN without both classes."""
    positives, negatives = int(positive.sum()), int((~positive).sum())
    if not positives or not negatives:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Mid-rank of each distinct score, 1-based.
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def next_event_metrics(prediction: NextEventPrediction, cases: NextEventCases) -> dict[str, float]:
    rows = np.arange(len(cases))
    chosen = np.clip(prediction.action_probabilities[rows, cases.actions], 1e-12, 1.0)
    median = prediction.gap_quantiles_s[:, GAP_QUANTILE_LEVELS.index(0.5)]
    metrics = {
        "action_log_loss": float(-np.mean(np.log(chosen))),
        "purchase_auc": auc(prediction.action_probabilities[:, _PURCHASE], cases.actions == _PURCHASE),
        "log_gap_median_abs_error": float(np.median(np.abs(np.log1p(median) - np.log1p(cases.gaps_s)))),
    }
    sooner = cases.gaps_s[:, None] <= prediction.gap_quantiles_s
    for level, share in zip(GAP_QUANTILE_LEVELS, sooner.mean(axis=0), strict=True):
        metrics[f"gap_below_p{round(level * 100)}"] = float(share)
    return metrics


def compare_next_event(
    model: NextActionModel, vocab: ItemVocab, train: Sequence[UserSequence], cases: NextEventCases
) -> dict[str, dict[str, float]]:
    """``next_event_metrics`` of the model and both baselines, by predictor name."""
    everyone = global_prediction(train, len(cases))
    predictions = {
        "model": model_prediction(model, vocab, cases.inputs),
        "own_history": own_history_prediction(cases.inputs, everyone),
        "global": everyone,
    }
    return {name: next_event_metrics(prediction, cases) for name, prediction in predictions.items()}
