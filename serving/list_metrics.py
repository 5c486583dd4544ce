"""Metrics of recommendation lists beyond hitting the target, and popularity-debiased accuracy.

Lists are int [N, n] vocabulary indices (one list per test case, best first) and targets int
[N] vocabulary indices, under :mod:`serving.evaluation`'s catalogue, head (``HEAD_SHARE``)
and list length (``LIST_LENGTH``).

- Intra-list diversity: mean pairwise ``1 - cosine`` of the list's item embeddings.
- Novelty: mean ``-log2`` of the recommended items' share of training interactions.
- Popularity-debiased accuracy, because a model that only learns popularity looks good on a
  test set whose targets are as popular as the training data's: (i) HR/NDCG over the test
  cases whose target is outside the head, (ii) the self-normalised inverse-propensity
  estimate ``sum_i w_i * gain_i / sum_i w_i`` with ``w_i = 1 / count(target_i)`` (training
  interactions, counted as 1 for a target training never saw), i.e. each target item weighs
  about the same however often it was interacted with.
"""

from __future__ import annotations

import numpy as np

from serving.evaluation import LIST_LENGTH, Catalogue

__all__ = [
    "coverage",
    "hit_rate",
    "intra_list_diversity",
    "inverse_popularity_weights",
    "list_ranks",
    "list_report",
    "long_tail_share",
    "ndcg",
    "ndcg_change",
    "ndcg_gains",
    "novelty",
    "unit_rows",
]


def list_ranks(lists: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float [N]: 0-based position of each target in its list, inf where it is not there."""
    found = lists == targets[:, None]
    return np.where(found.any(axis=1), found.argmax(axis=1), np.inf)


def hit_rate(ranks: np.ndarray, cutoff: int = LIST_LENGTH, weights: np.ndarray | None = None) -> float:
    return float(np.average(ranks < cutoff, weights=weights)) if len(ranks) else 0.0


def ndcg_gains(ranks: np.ndarray, cutoff: int = LIST_LENGTH) -> np.ndarray:
    """float [N]: each case's NDCG; one relevant item per case, so the ideal DCG is 1."""
    return np.where(ranks < cutoff, 1.0 / np.log2(np.minimum(ranks, cutoff) + 2.0), 0.0)


def ndcg(ranks: np.ndarray, cutoff: int = LIST_LENGTH, weights: np.ndarray | None = None) -> float:
    return float(np.average(ndcg_gains(ranks, cutoff), weights=weights)) if len(ranks) else 0.0


def ndcg_change(ranks: np.ndarray, base_ranks: np.ndarray, cutoff: int = LIST_LENGTH) -> tuple[float, float]:
    """Relative change of NDCG against the base ranks of the same cases, and its standard
    error (paired: case-to-case differences, not two independent means)."""
    base = ndcg_gains(base_ranks, cutoff)
    difference = ndcg_gains(ranks, cutoff) - base
    scale = base.mean() * np.sqrt(len(base))
    return float(difference.mean() / base.mean()), float(difference.std(ddof=1) / scale)


def inverse_popularity_weights(targets: np.ndarray, catalogue: Catalogue) -> np.ndarray:
    """float [N], summing to 1: 1 / training count of each target (at least 1)."""
    weights = 1.0 / np.maximum(catalogue.counts[targets], 1)
    return weights / weights.sum()


def coverage(lists: np.ndarray, catalogue: Catalogue) -> float:
    return len(np.unique(lists)) / catalogue.size


def long_tail_share(lists: np.ndarray, catalogue: Catalogue) -> float:
    return float(np.mean(~catalogue.head()[lists]))


def novelty(lists: np.ndarray, catalogue: Catalogue) -> float:
    share = catalogue.counts[lists] / catalogue.counts.sum()
    return float(np.mean(-np.log2(share)))


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), so dot products are cosines."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms > 0, norms, 1.0)


def intra_list_diversity(lists: np.ndarray, unit_embeddings: np.ndarray) -> float:
    vectors = unit_embeddings[lists]  # [N, n, D]
    cosines = np.einsum("bid,bjd->bij", vectors, vectors)
    n = lists.shape[1]
    # The diagonal's cosines are 1: they add nothing to the sum of 1 - cosine.
    return float(np.mean((n * n - cosines.sum(axis=(1, 2))) / (n * (n - 1))))


def list_report(
    lists: np.ndarray, targets: np.ndarray, catalogue: Catalogue, unit_embeddings: np.ndarray
) -> dict[str, float]:
    """Accuracy, debiased accuracy and beyond-accuracy metrics of lists of ``LIST_LENGTH``."""
    k = lists.shape[1]
    ranks = list_ranks(lists, targets)
    tail = ~catalogue.head()[targets]
    weights = inverse_popularity_weights(targets, catalogue)
    return {
        f"hr@{k}": hit_rate(ranks, k),
        f"ndcg@{k}": ndcg(ranks, k),
        f"coverage@{k}": coverage(lists, catalogue),
        f"ild@{k}": intra_list_diversity(lists, unit_embeddings),
        f"novelty@{k}": novelty(lists, catalogue),
        f"long_tail@{k}": long_tail_share(lists, catalogue),
        f"hr@{k}_tail_targets": hit_rate(ranks[tail], k),
        f"ndcg@{k}_tail_targets": ndcg(ranks[tail], k),
        f"hr@{k}_ips": hit_rate(ranks, k, weights),
        f"ndcg@{k}_ips": ndcg(ranks, k, weights),
        "tail_target_share": float(np.mean(tail)),
    }
