"""Non-neural baselines scored through the same evaluation as the model.

popularity: training interaction counts. transition: first-order Markov counts of which item
followed the user's last input item in the training data; popularity breaks its ties and
stands in for unseen last items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.data import UserSequence
from serving.evaluation import Catalogue

__all__ = ["PopularityScorer", "TransitionScorer"]


@dataclass(frozen=True)
class PopularityScorer:
    catalogue: Catalogue

    def __call__(self, inputs: Sequence[UserSequence]) -> np.ndarray:
        counts = self.catalogue.counts.astype(np.float64)
        return np.broadcast_to(counts, (len(inputs), len(counts)))


class TransitionScorer:
    """Counts kept sparse (sorted ``previous * V + next`` keys): a dense V x V table does not fit
    for catalogues of tens of thousands of items."""

    def __init__(self, catalogue: Catalogue, train: Sequence[UserSequence]) -> None:
        self.catalogue = catalogue
        self.size = len(catalogue.counts)
        keys = [
            indices[:-1] * self.size + indices[1:]
            for indices in (catalogue.vocab.indices(seq.items) for seq in train)
        ]
        self.keys, self.counts = np.unique(np.concatenate([np.zeros(0, np.int64), *keys]), return_counts=True)
        # Popularity scaled into [0, 1): it orders items with equal transition counts only.
        self.tie_break = catalogue.counts / (catalogue.counts.max() + 1.0)

    def __call__(self, inputs: Sequence[UserSequence]) -> np.ndarray:
        scores = np.tile(self.tie_break, (len(inputs), 1))
        for row, seq in enumerate(inputs):
            last = self.catalogue.vocab.index(seq.items[-1])
            lo, hi = np.searchsorted(self.keys, [last * self.size, (last + 1) * self.size])
            scores[row, self.keys[lo:hi] - last * self.size] += self.counts[lo:hi]
        return scores
