"""Leave-one-out evaluation, the one protocol for validation, tests, baselines and the benchmark.

Per user: the last interaction is the test target, the one before it the validation target,
the rest is training data; users with fewer than three interactions are training data only.
Every catalogue item (the items of the training data) is ranked; items already in the user's
input sequence are excluded (scored -inf), and a target tied with other items ranks below
all of them, so constant or coarse scores can never look good by luck.

``history="zero"`` is the other convention of published sequential recommenders (the code of
BSARec and its successors): the input's items keep a score of 0 instead of leaving the
ranking, so they still outrank every item the model scores below 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from contract import FIRST_ITEM_INDEX, HEAD_SHARE
from serving.data import UserSequence
from serving.vocab import ItemVocab

__all__ = [
    "CUTOFFS",
    "HEAD_SHARE",
    "Cases",
    "Catalogue",
    "History",
    "Metrics",
    "ScoreFn",
    "Split",
    "evaluate",
    "exclude_inputs",
    "leave_one_out",
]

CUTOFFS = (5, 10, 20)
LIST_LENGTH = 10  # the recommendation list that coverage and long-tail share look at

# Inputs of a batch of users -> float scores [B, V] by vocabulary index (pad/unknown ignored).
ScoreFn = Callable[[Sequence[UserSequence]], np.ndarray]


@dataclass(frozen=True)
class Cases:
    """Evaluation cases: each user's input sequence and the item that came next."""

    inputs: list[UserSequence]
    targets: list[str]

    def __len__(self) -> int:
        return len(self.inputs)

    def sample(self, n: int, seed: int) -> Cases:
        """At most ``n`` cases, picked at random (for quick validation during training)."""
        picked = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return Cases([self.inputs[i] for i in picked], [self.targets[i] for i in picked])


@dataclass(frozen=True)
class Split:
    train: list[UserSequence]  # every user's training part
    validation: Cases  # training part -> second-to-last item
    test: Cases  # training part + validation item -> last item


def leave_one_out(sequences: Sequence[UserSequence]) -> Split:
    evaluated = [seq for seq in sequences if len(seq) >= 3]
    return Split(
        train=[seq.head(len(seq) - 2) if len(seq) >= 3 else seq for seq in sequences],
        validation=Cases([seq.head(len(seq) - 2) for seq in evaluated], [seq.items[-2] for seq in evaluated]),
        test=Cases([seq.head(len(seq) - 1) for seq in evaluated], [seq.items[-1] for seq in evaluated]),
    )


@dataclass(frozen=True)
class Catalogue:
    """The rankable items (the training data's vocabulary) and their training counts."""

    vocab: ItemVocab
    counts: np.ndarray  # int64 [V], interactions per vocabulary index (0 for pad and unknown)

    @classmethod
    def of(cls, train: Sequence[UserSequence]) -> Catalogue:
        counted = Counter(item for seq in train for item in seq.items)
        vocab = ItemVocab.build(counted.elements())
        counts = np.zeros(len(vocab), dtype=np.int64)
        for item, n in counted.items():
            counts[vocab.index(item)] = n
        return cls(vocab, counts)

    @property
    def size(self) -> int:
        return len(self.vocab.items)

    def head(self) -> np.ndarray:
        """bool [V]: the ``HEAD_SHARE`` most popular items (the vocabulary is ordered by count)."""
        head = np.zeros(len(self.vocab), dtype=bool)
        head[FIRST_ITEM_INDEX : FIRST_ITEM_INDEX + math.ceil(HEAD_SHARE * self.size)] = True
        return head


@dataclass(frozen=True)
class Metrics:
    users: int
    hit_rate: dict[int, float]  # by cutoff
    ndcg: dict[int, float]
    coverage: float  # distinct items in all top-10 lists / catalogue size
    long_tail_share: float  # share of top-10 slots filled by items outside the popular head

    def to_dict(self) -> dict[str, float]:
        flat: dict[str, float] = {"users": self.users}
        for k in CUTOFFS:
            flat[f"hr@{k}"] = self.hit_rate[k]
            flat[f"ndcg@{k}"] = self.ndcg[k]
        flat[f"coverage@{LIST_LENGTH}"] = self.coverage
        flat[f"long_tail@{LIST_LENGTH}"] = self.long_tail_share
        return flat


History = Literal["excluded", "zero"]


def exclude_inputs(
    scores: np.ndarray, inputs: Sequence[UserSequence], vocab: ItemVocab, history: History = "excluded"
) -> np.ndarray:
    """float64 [B, V]: pad and unknown at -inf, every item of the user's input at -inf
    (``history="excluded"``) or at 0 (``"zero"``)."""
    scores = scores.astype(np.float64, copy=True)
    for row, seq in enumerate(inputs):
        scores[row, vocab.indices(seq.items)] = -np.inf if history == "excluded" else 0.0
    scores[:, :FIRST_ITEM_INDEX] = -np.inf  # after the inputs: unknown ones map to the unknown index
    return scores


def _ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float [B]: 0-based rank of each target, below every item scoring as high (pessimistic ties).

    An unknown or excluded target scores -inf: rank inf, a miss at every cutoff.
    """
    target_scores = scores[np.arange(len(targets)), targets]
    at_least = (scores >= target_scores[:, None]).sum(axis=1)
    return np.where(np.isfinite(target_scores), at_least - 1.0, np.inf)


def _top(scores: np.ndarray, n: int) -> list[np.ndarray]:
    """Each row's top-``n`` vocabulary indices, excluded (-inf) items left out."""
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    return [row[np.isfinite(s[row])] for row, s in zip(top, scores, strict=True)]


def evaluate(
    score: ScoreFn, cases: Cases, catalogue: Catalogue, batch_size: int = 256, history: History = "excluded"
) -> Metrics:
    if not len(cases):
        raise ValueError("no evaluation cases: every user has fewer than three interactions")
    ranks, recommended = [], []
    for start in range(0, len(cases), batch_size):
        inputs = cases.inputs[start : start + batch_size]
        scores = exclude_inputs(score(inputs), inputs, catalogue.vocab, history)
        targets = catalogue.vocab.indices(cases.targets[start : start + batch_size])
        ranks.append(_ranks(scores, targets))
        recommended.extend(_top(scores, LIST_LENGTH))
    rank = np.concatenate(ranks)
    slots = np.concatenate(recommended)
    gain = 1.0 / np.log2(rank + 2.0)
    return Metrics(
        users=len(cases),
        hit_rate={k: float(np.mean(rank < k)) for k in CUTOFFS},
        ndcg={k: float(np.mean(np.where(rank < k, gain, 0.0))) for k in CUTOFFS},
        coverage=len(np.unique(slots)) / catalogue.size,
        long_tail_share=float(np.mean(~catalogue.head()[slots])) if len(slots) else 0.0,
    )
