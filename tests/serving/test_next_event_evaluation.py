"""Next-event metrics: the cases are leave-one-out's, the baselines what they claim, AUC and
calibration as defined."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from contract import ACTION_CODES, ACTIONS, GAP_QUANTILE_LEVELS
from serving.data import UserSequence
from serving.next_event_evaluation import (
    NextEventCases,
    NextEventPrediction,
    auc,
    global_prediction,
    next_event_cases,
    next_event_metrics,
    own_history_prediction,
)

pytestmark = pytest.mark.unit


def sequence(user: str, actions: list[str], seconds: list[int]) -> UserSequence:
    return UserSequence(
        user,
        tuple(f"{user}-{i}" for i in range(len(actions))),
        tuple(f"item{i}" for i in range(len(actions))),
        tuple(ACTION_CODES[a] for a in actions),
        tuple(1000 * s for s in seconds),
    )


BUYER = sequence("b", ["view", "add_to_cart", "purchase", "view", "purchase"], [0, 10, 30, 1000, 1060])
SHORT = sequence("s", ["view", "view"], [0, 5])


def test_cases_hold_out_the_same_events_as_the_item_metrics() -> None:
    test = next_event_cases([BUYER, SHORT], "test")
    assert [len(seq) for seq in test.inputs] == [4]  # users with fewer than three events are not cases
    assert test.actions.tolist() == [ACTIONS.index("purchase")] and test.gaps_s.tolist() == [60.0]
    validation = next_event_cases([BUYER], "validation")
    assert len(validation.inputs[0]) == 3
    assert validation.actions.tolist() == [ACTIONS.index("view")] and validation.gaps_s.tolist() == [970.0]


def test_auc_counts_ordered_pairs_and_ties_half() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    positive = rng.random(40) < 0.3
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for p, n in itertools.product(scores[positive], scores[~positive])
    ]
    assert auc(scores, positive) == pytest.approx(np.mean(pairs))
    assert auc(np.array([1.0, 2.0]), np.array([False, True])) == 1.0
    assert np.isnan(auc(np.array([1.0, 2.0]), np.array([True, True])))


def test_own_history_follows_the_user_and_falls_back_to_everyone() -> None:
    everyone = global_prediction([BUYER, SHORT], 2)
    counts = np.array([4, 0, 1, 2]) + 1.0  # view, click, cart, purchase over both users, add-one
    assert everyone.action_probabilities[0] == pytest.approx(counts / counts.sum())
    lone = sequence("l", ["view"], [0])
    own = own_history_prediction([BUYER, lone], everyone)
    buyer_counts = np.array([2, 0, 1, 2]) + everyone.action_probabilities[0]
    assert own.action_probabilities[0] == pytest.approx(buyer_counts / buyer_counts.sum())
    assert own.action_probabilities[1] == pytest.approx((np.array([1, 0, 0, 0]) + counts / counts.sum()) / 2)
    assert own.gap_quantiles_s[0] == pytest.approx(np.quantile([10, 20, 970, 60], GAP_QUANTILE_LEVELS))
    assert own.gap_quantiles_s[1] == pytest.approx(everyone.gap_quantiles_s[1])  # no gap of its own yet


def test_metrics_reward_the_right_action_and_a_calibrated_time() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    actions = rng.integers(0, len(ACTIONS), n)
    gaps = np.expm1(rng.normal(4.0, 1.0, n))
    cases = NextEventCases([SHORT] * n, actions, gaps)
    # The true distribution of log(1 + gap) is N(4, 1): its quantiles are calibrated.
    true_quantiles = np.expm1(4.0 + np.array([-1.2816, -0.6745, 0.0, 0.6745, 1.2816]))
    sure = np.eye(len(ACTIONS))[actions] * 0.97 + 0.01
    informed = next_event_metrics(NextEventPrediction(sure, np.tile(true_quantiles, (n, 1))), cases)
    blind = next_event_metrics(
        NextEventPrediction(np.full((n, len(ACTIONS)), 0.25), np.tile(true_quantiles * 20, (n, 1))), cases
    )
    assert informed["action_log_loss"] < 0.05 < np.log(4) == pytest.approx(blind["action_log_loss"])
    assert informed["purchase_auc"] == 1.0 and blind["purchase_auc"] == 0.5
    for level in GAP_QUANTILE_LEVELS:
        assert informed[f"gap_below_p{round(level * 100)}"] == pytest.approx(level, abs=0.03)
    # Median absolute error of a normal's median: 0.6745 sigma; twenty times the time adds log 20.
    assert informed["log_gap_median_abs_error"] == pytest.approx(0.6745, abs=0.05)
    assert blind["log_gap_median_abs_error"] > 2.0
