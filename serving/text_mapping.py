"""Text embeddings -> item embedding rows: ridge regression fitted on the items with history.

One linear map (with an unpenalised intercept) predicts every network's item row at once,
targets side by side [N, networks * D]; the penalty is chosen by k-fold cross-validation on
the warm items. The map belongs to the network weights it was fitted on, so it is saved with
a checkpoint (``MAPPING``) and reused by later additions to it: only new texts need encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MAPPING", "MIN_ITEMS", "PENALTIES", "TextMapping", "fit_ridge"]

MAPPING = "text_mapping.npz"
# Penalties tried; the text vectors have unit length, so useful ones lie around 0.1..100.
PENALTIES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
FOLDS = 5
MIN_ITEMS = 2 * FOLDS  # cross-validation needs two items per fold at least


def fit_ridge(text: np.ndarray, targets: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """float [N, T] and [N, K] -> (weights [T, K], intercept [K]) minimising squared error plus
    ``penalty`` * |weights|^2; the intercept is not penalised."""
    text_mean, target_mean = text.mean(axis=0), targets.mean(axis=0)
    centred = text - text_mean
    gram = centred.T @ centred + penalty * np.eye(text.shape[1])
    weights = np.linalg.solve(gram, centred.T @ (targets - target_mean))
    return weights, target_mean - text_mean @ weights


def _validation_error(text: np.ndarray, targets: np.ndarray, penalty: float, seed: int) -> float:
    fold = np.random.default_rng(seed).permutation(len(text)) % FOLDS
    squared = 0.0
    for k in range(FOLDS):
        weights, intercept = fit_ridge(text[fold != k], targets[fold != k], penalty)
        squared += float(((text[fold == k] @ weights + intercept - targets[fold == k]) ** 2).sum())
    return squared / targets.size


@dataclass(frozen=True)
class TextMapping:
    weights: np.ndarray  # float32 [T, networks * D]
    intercept: np.ndarray  # float32 [networks * D]
    penalty: float
    # Cross-validated share of the warm rows' variance the map explains (1 - MSE / variance).
    explained: float

    @classmethod
    def fit(cls, text: np.ndarray, rows: np.ndarray, seed: int = 0) -> TextMapping:
        """Warm items' text vectors [N, T] and their rows [N, networks * D]."""
        if len(text) < MIN_ITEMS:
            raise ValueError(f"need at least {MIN_ITEMS} items with history and text, got {len(text)}")
        errors = {p: _validation_error(text, rows, p, seed) for p in PENALTIES}
        penalty = min(errors, key=errors.__getitem__)
        weights, intercept = fit_ridge(text.astype(np.float64), rows.astype(np.float64), penalty)
        variance = float(rows.var(axis=0).mean())
        return cls(
            weights.astype(np.float32),
            intercept.astype(np.float32),
            penalty,
            1.0 - errors[penalty] / variance if variance > 0 else 0.0,
        )

    def predict(self, text: np.ndarray) -> np.ndarray:
        """float [N, T] -> rows float32 [N, networks * D]."""
        return (text @ self.weights + self.intercept).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(
            path,
            weights=self.weights,
            intercept=self.intercept,
            penalty=self.penalty,
            explained=self.explained,
        )

    @classmethod
    def load(cls, path: Path) -> TextMapping:
        with np.load(path) as saved:
            return cls(
                saved["weights"], saved["intercept"], float(saved["penalty"]), float(saved["explained"])
            )
