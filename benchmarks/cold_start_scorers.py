"""The scorers the cold-start benchmark compares, all over the extended vocabulary (warm items,
then held-out ones). Popularity of a held-out item can only come from the held-out period,
so the popularity scorers that know it are oracles: upper references, not methods."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from serving.checkpoint import Checkpoint
from serving.data import UserSequence
from serving.evaluation import ScoreFn
from serving.training_run import model_scorer
from serving.vocab import ItemVocab

__all__ = ["Scorers"]


def _constant(scores: np.ndarray) -> ScoreFn:
    def score(inputs: Sequence[UserSequence]) -> np.ndarray:
        return np.broadcast_to(scores, (len(inputs), len(scores)))

    return score


def _random(size: int, seed: int) -> ScoreFn:
    rng = np.random.default_rng(seed)

    def score(inputs: Sequence[UserSequence]) -> np.ndarray:
        return rng.random((len(inputs), size))

    return score


def _padded(score: ScoreFn, size: int) -> ScoreFn:
    """A scorer of the warm vocabulary with the held-out items appended at -inf."""

    def padded(inputs: Sequence[UserSequence]) -> np.ndarray:
        warm = score(inputs)
        return np.pad(warm, ((0, 0), (0, size - warm.shape[1])), constant_values=-np.inf)

    return padded


def _only(score: ScoreFn, allowed: np.ndarray) -> ScoreFn:
    """The scorer with every item outside ``allowed`` (bool [V]) at -inf."""

    def masked(inputs: Sequence[UserSequence]) -> np.ndarray:
        return np.where(allowed, score(inputs), -np.inf)

    return masked


@dataclass(frozen=True)
class Scorers:
    original: Checkpoint  # the trained model, warm items only
    extended: Mapping[float, Checkpoint]  # held-out items added, by the scale of their rows
    vocab: ItemVocab  # warm items, then the held-out ones
    all_counts: Counter[str]  # interactions over the whole data, held-out period included
    cold_items: frozenset[str]

    def _counts(self, counts: Counter[str]) -> np.ndarray:
        return np.array([0, 0, *(counts[item] for item in self.vocab.items)], dtype=np.float64)

    def _cold_mask(self) -> np.ndarray:
        return np.array([False, False, *(item in self.cold_items for item in self.vocab.items)])

    def for_known_targets(self) -> dict[str, ScoreFn]:
        """The scorers that may rank any item: the model before and after adding rows."""
        size = len(self.vocab)
        methods = {
            "model, held-out items unknown": _padded(
                model_scorer(self.original.model, self.original.vocab), size
            )
        }
        for scale, checkpoint in self.extended.items():
            methods[f"model + text rows x{scale}"] = model_scorer(checkpoint.model, checkpoint.vocab)
        return methods

    def for_cold(self) -> dict[str, ScoreFn]:
        size = len(self.vocab)
        cold = self._cold_mask()
        warm_counts = Counter({item: n for item, n in self.all_counts.items() if item not in self.cold_items})
        oracle = _constant(self._counts(self.all_counts))
        methods: dict[str, ScoreFn] = {
            "random": _random(size, seed=0),
            "popularity (training counts: held-out items 0)": _constant(self._counts(warm_counts)),
            "popularity, oracle counts incl. held-out period": oracle,
            "held-out items only, by oracle popularity": _only(
                _constant(self._counts(self.all_counts)), cold
            ),
            "model, held-out items unknown": _padded(
                model_scorer(self.original.model, self.original.vocab), size
            ),
        }
        for scale, checkpoint in self.extended.items():
            methods[f"model + text rows x{scale}"] = model_scorer(checkpoint.model, checkpoint.vocab)
        # Scaling the rows keeps their order among themselves: one scale shows them all.
        methods["held-out items only, model + text rows"] = _only(
            model_scorer(self.extended[1.0].model, self.extended[1.0].vocab), cold
        )
        return methods
