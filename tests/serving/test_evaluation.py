"""Leave-one-out split and metrics on tiny hand-checked cases; the baselines on the same protocol."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from contract import PAD_INDEX
from serving.baselines import PopularityScorer, TransitionScorer, top_successors
from serving.data import UserSequence
from serving.evaluation import Cases, Catalogue, ScoreFn, evaluate, leave_one_out

pytestmark = pytest.mark.unit


def seq(user: str, items: Sequence[str]) -> UserSequence:
    n = len(items)
    return UserSequence(user, tuple(f"{user}{i}" for i in range(n)), tuple(items), (1,) * n, tuple(range(n)))


def test_leave_one_out_holds_out_the_last_two_of_users_with_three_or_more() -> None:
    split = leave_one_out([seq("u1", "abcde"), seq("u2", "xy"), seq("u3", "pqr")])
    assert [s.items for s in split.train] == [tuple("abc"), tuple("xy"), ("p",)]
    assert [s.items for s in split.validation.inputs] == [tuple("abc"), ("p",)]
    assert split.validation.targets == ["d", "q"]
    assert [s.items for s in split.test.inputs] == [tuple("abcd"), tuple("pq")]
    assert split.test.targets == ["e", "r"]


def fixed_scores(rows: list[list[float]]) -> ScoreFn:
    def score(inputs: Sequence[UserSequence]) -> np.ndarray:
        return np.asarray(rows[: len(inputs)], dtype=np.float64)

    return score


def test_ties_rank_below_and_input_or_unknown_targets_miss() -> None:
    # Training counts a:5 b:4 c:3 d:2 e:1, so the vocabulary is [pad, unknown, a, b, c, d, e].
    catalogue = Catalogue.of([seq("t", "aaaaabbbbcccdde")])
    assert catalogue.counts.tolist() == [0, 0, 5, 4, 3, 2, 1]
    cases = Cases([seq("u1", "c"), seq("u2", "a"), seq("u3", "d")], ["b", "a", "x"])
    scores = [
        [9, 9, 1, 1, 5, 1, 0],  # c is in the input: excluded; b ties with a and d -> rank 3
        [0, 0, 10, 0, 0, 0, 0],  # the target a is in the input: excluded, a miss
        [0, 0, 0, 0, 0, 0, 0],  # x is not in the catalogue: a miss
    ]
    metrics = evaluate(fixed_scores(scores), cases, catalogue, batch_size=2)
    assert metrics.users == 3
    assert metrics.hit_rate == {5: pytest.approx(1 / 3), 10: pytest.approx(1 / 3), 20: pytest.approx(1 / 3)}
    assert metrics.ndcg[5] == pytest.approx((1 / np.log2(4)) / 3)
    # Catalogue of 5 < 10, so every list holds the 4 items outside its input; only a is popular.
    assert metrics.coverage == 1.0
    assert metrics.long_tail_share == pytest.approx(10 / 12)
    alone = evaluate(fixed_scores([[0, 0, 0, 2, 0, 0, 0]]), Cases([seq("u", "c")], ["b"]), catalogue)
    assert alone.ndcg[5] == 1.0  # untied at the top: rank 0


def test_under_the_zero_convention_input_items_score_0_and_still_outrank_negative_scores() -> None:
    catalogue = Catalogue.of([seq("t", "aaaaabbbbcccdde")])  # [pad, unknown, a, b, c, d, e]
    cases = Cases([seq("u1", "cz"), seq("u2", "a")], ["b", "a"])
    scores = [
        [9, 9, 3, -1, 5, 2, -2],  # input c scores 0, above b: rank 3 (a, d, c); unknown z stays out
        [0, 0, 10, 0, 0, 0, 0],  # the target a is in the input: 0, tied with b..e -> rank 4
    ]
    zero = evaluate(fixed_scores(scores), cases, catalogue, history="zero")
    excluded = evaluate(fixed_scores(scores), cases, catalogue)
    assert zero.ndcg[5] == pytest.approx((1 / np.log2(5) + 1 / np.log2(6)) / 2)
    assert excluded.ndcg[5] == pytest.approx((1 / np.log2(4)) / 2)  # b is third; a misses


def popularity_catalogue() -> Catalogue:
    """15 items, i00 the most popular (15 interactions) down to i14 (1)."""
    return Catalogue.of([seq("t", [f"i{n:02d}" for n in range(15) for _ in range(15 - n)])])


def test_popularity_coverage_and_long_tail_share() -> None:
    catalogue = popularity_catalogue()
    cases = Cases([seq("u1", ["i00"]), seq("u2", ["i00"])], ["i01", "i11"])
    metrics = evaluate(PopularityScorer(catalogue), cases, catalogue)
    # Both lists are i01..i10: coverage 10 of 15; the head is the top 3 (i00-i02), 2 of each 10.
    assert metrics.coverage == pytest.approx(10 / 15)
    assert metrics.long_tail_share == pytest.approx(8 / 10)
    assert metrics.hit_rate[10] == 0.5 and metrics.hit_rate[20] == 1.0
    assert metrics.ndcg[10] == pytest.approx(0.5)  # i01 ranks first once i00 is excluded


def test_transition_follows_the_last_item_and_falls_back_to_popularity() -> None:
    train = [seq("1", "ab"), seq("2", "ac"), seq("3", "ab"), seq("4", "ca"), seq("5", "d")]
    catalogue = Catalogue.of(train)  # a:4, b:2, c:2, d:1
    scorer = TransitionScorer(catalogue, train)
    vocab = catalogue.vocab
    after_a, after_d, after_unknown = scorer([seq("u", "ca"), seq("v", "d"), seq("w", "z")])
    assert after_a[vocab.index("b")] > after_a[vocab.index("c")] > after_a[vocab.index("d")]
    for scores in (after_d, after_unknown):  # no transitions seen: popularity order
        ranked = [vocab.items[i - 2] for i in np.argsort(-scores[2:], kind="stable") + 2]
        assert ranked == ["a", "b", "c", "d"]
    metrics = evaluate(scorer, Cases([seq("u", "ca")], ["b"]), catalogue)
    assert metrics.hit_rate[5] == 1.0 and metrics.ndcg[5] == 1.0


def test_top_successors_are_the_most_frequent_next_items_padded() -> None:
    train = [seq("1", "ab"), seq("2", "ac"), seq("3", "ab"), seq("4", "cab"), seq("5", "d")]
    catalogue = Catalogue.of(train)
    index = catalogue.vocab.index
    items, counts = top_successors(catalogue, train, 3)
    assert items.shape == counts.shape == (len(catalogue.vocab), 3)
    assert items[index("a")].tolist() == [index("b"), index("c"), PAD_INDEX]
    assert counts[index("a")].tolist() == [3, 1, 0]
    assert items[index("c")].tolist() == [index("a"), PAD_INDEX, PAD_INDEX]
    assert counts[index("b")].tolist() == counts[index("d")].tolist() == [0, 0, 0]
    kept, kept_counts = top_successors(catalogue, train, 1)  # the most frequent only
    assert kept[index("a")].tolist() == [index("b")] and kept_counts[index("a")].tolist() == [3]
