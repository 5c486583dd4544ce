"""List metrics: diversity, novelty, long tail and popularity-debiased accuracy, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serving.data import UserSequence
from serving.evaluation import Catalogue
from serving.list_metrics import (
    intra_list_diversity,
    inverse_popularity_weights,
    list_ranks,
    list_report,
    ndcg,
    ndcg_change,
    novelty,
    unit_rows,
)

pytestmark = pytest.mark.unit


def catalogue_of(counts: dict[str, int]) -> Catalogue:
    """A catalogue whose training data holds each item ``counts[item]`` times."""
    items = tuple(item for item, n in counts.items() for _ in range(n))
    zeros = (0,) * len(items)
    return Catalogue.of([UserSequence("u", tuple(map(str, range(len(items)))), items, zeros, zeros)])


# 10 items: "a" 8 times, "b" 4, "c" 2, the rest once. Indices follow popularity: a=2, b=3, ...
CATALOGUE = catalogue_of({"a": 8, "b": 4, "c": 2, **{f"t{n}": 1 for n in range(7)}})


def index(*items: str) -> list[int]:
    return CATALOGUE.vocab.indices(list(items)).tolist()


def test_ranks_are_positions_in_the_list_and_misses_rank_infinitely_low() -> None:
    lists = np.array([index("a", "b", "c"), index("c", "b", "a")])
    ranks = list_ranks(lists, np.array(index("b", "t0")))
    assert ranks.tolist() == [1, math.inf]
    assert ndcg(ranks, 3) == pytest.approx((1 / math.log2(3)) / 2)


def test_diversity_is_mean_pairwise_one_minus_cosine() -> None:
    embeddings = unit_rows(np.array([[0, 0], [0, 0], [1, 0], [2, 0], [0, 3], [-1, 0]], dtype=float))
    same = intra_list_diversity(np.array([[2, 3]]), embeddings)
    orthogonal = intra_list_diversity(np.array([[2, 4]]), embeddings)
    mixed = intra_list_diversity(np.array([[2, 4, 5]]), embeddings)  # 1 - cos: 1, 2, 1
    assert (same, orthogonal, mixed) == pytest.approx((0.0, 1.0, 4 / 3))


def test_novelty_is_the_mean_surprise_of_the_recommended_items() -> None:
    total = 8 + 4 + 2 + 7
    assert novelty(np.array([index("a", "t0")]), CATALOGUE) == pytest.approx(
        (-math.log2(8 / total) - math.log2(1 / total)) / 2
    )


def test_inverse_popularity_weights_make_each_target_item_weigh_the_same() -> None:
    targets = np.array(index("a", "a", "t0", "unseen"))  # an unseen target counts once
    weights = inverse_popularity_weights(targets, CATALOGUE)
    assert weights.tolist() == pytest.approx([1 / 8 / 2.25, 1 / 8 / 2.25, 1 / 2.25, 1 / 2.25])


def test_the_debiased_views_reward_a_hit_on_a_rare_target_more_than_on_a_popular_one() -> None:
    # Two cases: a popular target and a long-tail one; one list hits each in turn.
    targets = np.array(index("a", "t3"))
    popular_hit = np.array([index("a", "b"), index("b", "c")])
    rare_hit = np.array([index("b", "c"), index("t3", "b")])
    embeddings = unit_rows(np.random.default_rng(0).normal(size=(len(CATALOGUE.vocab), 4)))
    popular = list_report(popular_hit, targets, CATALOGUE, embeddings)
    rare = list_report(rare_hit, targets, CATALOGUE, embeddings)
    assert popular["hr@2"] == rare["hr@2"] == 0.5
    assert popular["hr@2_tail_targets"] == 0.0 and rare["hr@2_tail_targets"] == 1.0
    assert popular["hr@2_ips"] == pytest.approx(1 / 9) and rare["hr@2_ips"] == pytest.approx(8 / 9)
    # 2 of 10 items are head (ceil(0.2 * 10)): a and b.
    assert popular["long_tail@2"] == 0.25 and rare["long_tail@2"] == 0.5
    assert popular["coverage@2"] == 3 / 10 and rare["tail_target_share"] == 0.5


def test_ndcg_change_is_relative_with_a_paired_standard_error() -> None:
    base = np.array([0.0, 0.0, math.inf, math.inf])  # two hits at the top: NDCG 0.5
    moved = np.array([0.0, 1.0, math.inf, math.inf])  # one of them one place down
    change, error = ndcg_change(moved, base, cutoff=10)
    loss = 1 - 1 / math.log2(3)
    assert change == pytest.approx(-loss / 2)
    # Differences (0, -loss, 0, 0): their standard deviation / sqrt(4), relative to 0.5.
    assert error == pytest.approx(np.std([0, -loss, 0, 0], ddof=1) / 2 / 0.5)
