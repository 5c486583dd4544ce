"""Non-neural baselines scored through the same evaluation as the model.

popularity: training interaction counts. transition: first-order Markov counts of which item
followed the user's last input item in the training data; popularity breaks its ties and
stands in for unseen last items. The same counts (``top_successors``) give the model its
transition prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract import PAD_INDEX
from serving.data import UserSequence
from serving.evaluation import Catalogue

__all__ = ["PopularityScorer", "TransitionScorer", "top_successors", "transition_counts"]


@dataclass(frozen=True)
class PopularityScorer:
    catalogue: Catalogue

    def __call__(self, inputs: Sequence[UserSequence]) -> np.ndarray:
        counts = self.catalogue.counts.astype(np.float64)
        return np.broadcast_to(counts, (len(inputs), len(counts)))


class TransitionScorer:
    """Scores items by how often they followed the input's last item in the training data."""

    def __init__(self, catalogue: Catalogue, train: Sequence[UserSequence]) -> None:
        self.catalogue = catalogue
        self.size = len(catalogue.counts)
        self.keys, self.counts = transition_counts(catalogue, train)
        # Popularity scaled into [0, 1): it orders items with equal transition counts only.
        self.tie_break = catalogue.counts / (catalogue.counts.max() + 1.0)

    def __call__(self, inputs: Sequence[UserSequence]) -> np.ndarray:
        scores = np.tile(self.tie_break, (len(inputs), 1))
        for row, seq in enumerate(inputs):
            last = self.catalogue.vocab.index(seq.items[-1])
            lo, hi = np.searchsorted(self.keys, [last * self.size, (last + 1) * self.size])
            scores[row, self.keys[lo:hi] - last * self.size] += self.counts[lo:hi]
        return scores


def transition_counts(catalogue: Catalogue, train: Sequence[UserSequence]) -> tuple[np.ndarray, np.ndarray]:
    """How often each item followed another: sorted keys ``previous * V + next`` and their counts
    (int64, sparse: a dense V x V table does not fit for catalogues of tens of thousands)."""
    size = len(catalogue.counts)
    keys = [
        indices[:-1] * size + indices[1:] for indices in (catalogue.vocab.indices(seq.items) for seq in train)
    ]
    unique, counts = np.unique(np.concatenate([np.zeros(0, np.int64), *keys]), return_counts=True)
    return unique, counts.astype(np.int64)


def top_successors(
    catalogue: Catalogue, train: Sequence[UserSequence], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` most frequent next items and their counts, int64 [V, k] each; rows
    are filled with the pad index and count 0 where an item has fewer successors."""
    keys, counts = transition_counts(catalogue, train)
    return top_per_row(keys, counts, len(catalogue.counts), k)


def top_per_row(keys: np.ndarray, counts: np.ndarray, size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest counts of each row of a sparse [size, size] table (keys ``row * size
    + column``) and their columns, int64 [size, k] each: columns, then counts; pad and 0 where
    a row has fewer."""
    rows, columns = np.divmod(keys, size)
    # Per row, largest first: sort by (row, -count).
    order = np.lexsort((-counts, rows))
    rows, columns, counts = rows[order], columns[order], counts[order]
    starts = np.searchsorted(rows, rows)  # first entry of each row
    rank = np.arange(len(rows)) - starts
    kept = rank < k
    items = np.full((size, k), PAD_INDEX, dtype=np.int64)
    top_counts = np.zeros((size, k), dtype=np.int64)
    items[rows[kept], rank[kept]] = columns[kept]
    top_counts[rows[kept], rank[kept]] = counts[kept]
    return items, top_counts
