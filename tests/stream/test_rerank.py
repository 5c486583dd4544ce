"""Re-ranking a window's candidates: MMR diversity and the long-tail exploration slot."""

from __future__ import annotations

import numpy as np
import pytest

from stream.rerank import (
    EXPLORATION,
    MECHANISMS,
    MODEL,
    Relevance,
    RerankPolicy,
    long_tail_mask,
    rerank,
    row_noise,
)

pytestmark = pytest.mark.unit


def candidates(batch: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities sorted high to low and the cosine similarity of random embeddings."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, k)) * 2
    probabilities = np.sort(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), axis=1)[:, ::-1]
    embeddings = rng.normal(size=(batch, k, 8))
    embeddings /= np.linalg.norm(embeddings, axis=2, keepdims=True)
    return probabilities.astype(np.float32), np.einsum("bkd,bjd->bkj", embeddings, embeddings)


PLAIN = RerankPolicy(diversity=0.0, exploration_slots=0)
RATIO = RerankPolicy(diversity=0.3, exploration_slots=0, relevance="ratio")


def noise(batch: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, k))


def no_tail(batch: int, k: int) -> np.ndarray:
    return np.zeros((batch, k), dtype=bool)


@pytest.mark.parametrize("relevance", ["ratio", "rank"])
def test_without_diversity_or_exploration_the_model_order_is_kept(relevance: Relevance) -> None:
    probabilities, similarity = candidates(16, 20)
    policy = RerankPolicy(diversity=0.0, exploration_slots=0, relevance=relevance)
    result = rerank(probabilities, similarity, no_tail(16, 20), 10, policy, noise(*probabilities.shape))
    assert (result.columns == np.arange(10)).all()
    assert (result.mechanisms == MODEL).all() and MECHANISMS[MODEL] == "model"


def test_diversity_skips_near_duplicates_of_a_taken_candidate() -> None:
    # Candidates 0, 1 and 2 are one item in effect (similarity ~1), 3 and 4 differ from all.
    probabilities = np.array([[0.3, 0.25, 0.2, 0.15, 0.1]], dtype=np.float32)
    similarity = np.eye(5)[None].copy()
    similarity[0, :3, :3] = 0.99
    np.fill_diagonal(similarity[0], 1.0)
    kept = rerank(probabilities, similarity, no_tail(1, 5), 3, PLAIN, noise(1, 5))
    diverse = rerank(probabilities, similarity, no_tail(1, 5), 3, RerankPolicy(0.7, 0, "ratio"), noise(1, 5))
    assert kept.columns.tolist() == [[0, 1, 2]]
    assert diverse.columns.tolist() == [[0, 3, 4]]


def test_exploration_places_only_long_tail_candidates_not_already_taken() -> None:
    probabilities, similarity = candidates(200, 20, seed=3)
    rng = np.random.default_rng(4)
    long_tail = rng.random((200, 20)) < 0.3
    long_tail[:, :8] = True  # the model's first picks are long tail too: not to be placed twice
    long_tail[:, -4:] = True  # and some are always left to explore
    policy = RerankPolicy(diversity=0.2, exploration_slots=2)
    result = rerank(probabilities, similarity, long_tail, 10, policy, noise(200, 20, seed=5))
    explored = result.mechanisms == EXPLORATION
    assert explored[:, 8:].all() and not explored[:, :8].any()
    assert long_tail[np.arange(200)[:, None], result.columns][explored].all()
    assert all(len(set(row)) == 10 for row in result.columns.tolist())


def test_exploration_samples_the_model_distribution_over_the_long_tail() -> None:
    # One slot, two long-tail candidates the model weighs 3:1 -> they are drawn about 3:1.
    probabilities = np.tile(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32), (4000, 1))
    long_tail = np.tile(np.array([False, False, True, True]), (4000, 1))
    similarity = np.tile(np.eye(4), (4000, 1, 1))
    policy = RerankPolicy(diversity=0.0, exploration_slots=1)
    result = rerank(probabilities, similarity, long_tail, 2, policy, noise(4000, 4, seed=6))
    assert (result.columns[:, 0] == 0).all()
    share = np.mean(result.columns[:, 1] == 2)
    assert share == pytest.approx(0.75, abs=0.03)


def test_a_window_without_a_long_tail_candidate_left_fills_the_slot_by_the_model() -> None:
    probabilities, similarity = candidates(2, 6)
    long_tail = np.zeros((2, 6), dtype=bool)
    long_tail[0, 5] = True
    result = rerank(
        probabilities, similarity, long_tail, 3, RerankPolicy(0.0, exploration_slots=1), noise(2, 6)
    )
    assert result.columns.tolist() == [[0, 1, 5], [0, 1, 2]]
    assert result.mechanisms.tolist() == [[MODEL, MODEL, EXPLORATION], [MODEL, MODEL, MODEL]]


def test_row_noise_depends_on_each_rows_seed_alone_and_is_uniform() -> None:
    seeds = np.array([7, 2**63 + 5, 7], dtype=np.uint64)
    noise_rows = row_noise(seeds, 20)
    assert noise_rows.shape == (3, 20) and ((noise_rows > 0) & (noise_rows < 1)).all()
    np.testing.assert_array_equal(noise_rows[0], noise_rows[2])
    np.testing.assert_array_equal(row_noise(seeds[1:2], 20)[0], noise_rows[1])
    assert not np.array_equal(noise_rows[0], noise_rows[1])
    many = row_noise(np.arange(2000, dtype=np.uint64), 50)
    assert many.mean() == pytest.approx(0.5, abs=0.01) and np.mean(many < 0.1) == pytest.approx(0.1, abs=0.01)


def test_the_same_noise_gives_the_same_lists() -> None:
    probabilities, similarity = candidates(64, 20)
    long_tail = np.random.default_rng(1).random((64, 20)) < 0.5
    policy = RerankPolicy(diversity=0.3, exploration_slots=2)
    seeds = np.arange(64, dtype=np.uint64)
    first = rerank(probabilities, similarity, long_tail, 10, policy, row_noise(seeds, 20))
    again = rerank(probabilities, similarity, long_tail, 10, policy, row_noise(seeds, 20))
    assert (first.columns == again.columns).all() and (first.mechanisms == again.mechanisms).all()


def test_each_window_is_reranked_as_if_alone() -> None:
    probabilities, similarity = candidates(32, 20, seed=8)
    long_tail = np.zeros((32, 20), dtype=bool)  # no sampling: rows comparable across batch sizes
    policy = RerankPolicy(diversity=0.4, exploration_slots=0, relevance="rank")
    batch = rerank(probabilities, similarity, long_tail, 10, policy, noise(*probabilities.shape))
    for row in (0, 17, 31):
        alone = rerank(
            probabilities[row : row + 1], similarity[row : row + 1], long_tail[:1], 10, policy, noise(1, 20)
        )
        assert (alone.columns[0] == batch.columns[row]).all()


def test_relevance_is_scale_free() -> None:
    probabilities, similarity = candidates(8, 20)
    flatter = probabilities**0.5  # same order, other scale: rank relevance must not notice
    policy = RerankPolicy(diversity=0.3, exploration_slots=0, relevance="rank")
    sharp = rerank(probabilities, similarity, no_tail(8, 20), 10, policy, noise(*probabilities.shape))
    flat = rerank(flatter, similarity, no_tail(8, 20), 10, policy, noise(*probabilities.shape))
    assert (sharp.columns == flat.columns).all()
    scaled = rerank(probabilities * 0.01, similarity, no_tail(8, 20), 10, RATIO, noise(8, 20))
    ratio = rerank(probabilities, similarity, no_tail(8, 20), 10, RATIO, noise(8, 20))
    assert (scaled.columns == ratio.columns).all()


def test_the_long_tail_is_below_the_head_cut() -> None:
    popularity = np.array([[0.02, 0.01, 0.005]])
    assert long_tail_mask(popularity, head_cut=0.01).tolist() == [[False, False, True]]


def test_a_policy_outside_its_range_is_refused() -> None:
    with pytest.raises(ValueError, match="diversity"):
        RerankPolicy(diversity=1.5)
    with pytest.raises(ValueError, match="exploration_slots"):
        RerankPolicy(exploration_slots=-1)
