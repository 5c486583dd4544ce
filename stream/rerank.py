"""Choose the n published items of a window's K model candidates: diversity and exploration.

Two mechanisms act on a whole scored batch at once (numpy over [B, K], a Python loop only
over the n slots, never over windows):

- MMR (maximal marginal relevance): each slot takes the candidate maximising
  ``(1 - diversity) * relevance - diversity * (its highest similarity to those already
  taken)``. Relevance is scale-free per row, so one weight means the same for a confident
  window and a flat one: ``"ratio"`` is probability / the row's highest probability,
  ``"rank"`` is 1 - model rank / (K - 1). With ``diversity == 0`` the model's order is kept.
- Exploration: the last ``exploration_slots`` slots go to long-tail candidates not already
  taken, drawn by Thompson sampling from the model's own distribution restricted to them.
  Adding Gumbel noise to log-probabilities and taking the largest is an exact sample of the
  softmax (several slots: the top ones, a sample without replacement), so a long-tail item
  is shown as often as the model believes in it among the long tail. A window without such
  a candidate left fills the slot by MMR.

Slots placed by MMR or in the model's order are marked ``"model"`` (the model's scores
chose them; MMR only reorders within its candidates), the sampled ones ``"exploration"``, so
that clicks on explored items can be told apart when measuring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

__all__ = [
    "EXPLORATION",
    "MECHANISMS",
    "MODEL",
    "Relevance",
    "RerankPolicy",
    "Reranked",
    "long_tail_mask",
    "rerank",
    "row_noise",
]

MECHANISMS: Final = ("model", "exploration")
_GOLDEN_GAMMA: Final = np.uint64(0x9E3779B97F4A7C15)
MODEL: Final = 0
EXPLORATION: Final = 1

Relevance = Literal["ratio", "rank"]


@dataclass(frozen=True)
class RerankPolicy:
    """How the published list departs from the model's order.

    The defaults are the setting that, with 50 candidates on converged MovieLens 100K and
    Amazon Beauty models, raised the long-tail share by at least 20% and intra-list diversity
    the most, for at most 5% NDCG@10 (``benchmarks/exploration.py``, the figures in
    docs/2026-11-29-beyond-accuracy.md). Rank relevance, because the model's probabilities fall
    so steeply that a diversity weight swamps their ratios.
    """

    diversity: float = 0.3  # MMR weight in [0, 1]; 0 keeps the model's order
    exploration_slots: int = 2  # last slots of the list given to a sampled long-tail candidate
    relevance: Relevance = "rank"

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity must lie in [0, 1], got {self.diversity}")
        if self.exploration_slots < 0:
            raise ValueError(f"exploration_slots must be >= 0, got {self.exploration_slots}")


@dataclass(frozen=True)
class Reranked:
    columns: np.ndarray  # int64 [B, n]: candidate columns (of the K) in publishing order
    mechanisms: np.ndarray  # int8 [B, n]: index into MECHANISMS of what placed each slot


def long_tail_mask(popularity: np.ndarray, head_cut: float) -> np.ndarray:
    """bool [B, K]: candidates less popular than the head's least popular item (``head_cut``,
    a training-interaction share); ties at the cut count as head."""
    return popularity < head_cut


def _relevance(probabilities: np.ndarray, kind: Relevance) -> np.ndarray:
    if kind == "ratio":
        top = probabilities.max(axis=1, keepdims=True)
        return probabilities / np.where(top > 0, top, 1)
    k = probabilities.shape[1]
    ranks = np.argsort(np.argsort(-probabilities, axis=1, kind="stable"), axis=1, kind="stable")
    return 1.0 - ranks / max(k - 1, 1)


def row_noise(seeds: np.ndarray, k: int) -> np.ndarray:
    """float [B, k] in (0, 1), a function of each row's uint64 seed alone (SplitMix64): the
    same window state samples the same exploration, however the batch around it was formed,
    so a redelivered or recomputed record repeats its items."""
    state = seeds.astype(np.uint64)[:, None] + np.arange(1, k + 1, dtype=np.uint64) * _GOLDEN_GAMMA
    state = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    state = (state ^ (state >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    state = state ^ (state >> np.uint64(31))
    return ((state >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def rerank(
    probabilities: np.ndarray,
    similarity: np.ndarray,
    long_tail: np.ndarray,
    n: int,
    policy: RerankPolicy,
    noise: np.ndarray,
) -> Reranked:
    """Pick and order ``n`` of each window's K candidates.

    ``probabilities`` float [B, K] (the model's, any order), ``similarity`` float [B, K, K]
    (cosine of item embeddings), ``long_tail`` bool [B, K], ``noise`` uniform (0, 1) [B, K]
    that exploration samples with (:func:`row_noise`).
    """
    batch, k = probabilities.shape
    n = min(n, k)
    rows = np.arange(batch)
    relevance = _relevance(probabilities, policy.relevance)
    first_explored = n - min(policy.exploration_slots, n)
    if first_explored < n:
        with np.errstate(divide="ignore"):
            sampled = np.log(probabilities) - np.log(-np.log(noise))  # Gumbel-perturbed
        # A candidate the model gives no chance is no sample of its distribution.
        long_tail = long_tail & (probabilities > 0)
    available = np.ones((batch, k), dtype=bool)
    closest = np.zeros((batch, k))  # highest similarity to a taken candidate; 0 before any
    columns = np.empty((batch, n), dtype=np.int64)
    mechanisms = np.full((batch, n), MODEL, dtype=np.int8)
    for slot in range(n):
        mmr = (1.0 - policy.diversity) * relevance - policy.diversity * closest
        picked = np.where(available, mmr, -np.inf).argmax(axis=1)
        if slot >= first_explored:
            explorable = available & long_tail
            explored = np.where(explorable, sampled, -np.inf).argmax(axis=1)
            explores = explorable.any(axis=1)
            picked = np.where(explores, explored, picked)
            mechanisms[explores, slot] = EXPLORATION
        columns[:, slot] = picked
        available[rows, picked] = False
        taken = similarity[rows, picked]
        closest = taken if slot == 0 else np.maximum(closest, taken)
    return Reranked(columns, mechanisms)
