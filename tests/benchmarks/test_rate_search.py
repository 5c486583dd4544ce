"""How the bench searches the highest offered rate the workers sustain."""

from __future__ import annotations

import pytest

from benchmarks.stream_bench import next_offered_rate, sustained_rate

pytestmark = pytest.mark.unit

MIN_STEPS = 4


def test_the_search_climbs_after_a_sustained_step_and_backs_off_after_a_failed_one() -> None:
    assert next_offered_rate({1000.0: [True]}, 1000.0, MIN_STEPS) == pytest.approx(1150.0)
    assert next_offered_rate({1000.0: [False]}, 1000.0, MIN_STEPS) == pytest.approx(800.0)


def test_once_bracketed_the_search_bisects() -> None:
    outcomes = {1000.0: [True], 1150.0: [False]}
    assert next_offered_rate(outcomes, 1150.0, MIN_STEPS) == pytest.approx(1075.0)


def test_a_rate_that_held_once_is_offered_again_before_it_counts() -> None:
    outcomes = {1000.0: [True], 1150.0: [False], 1075.0: [False], 1037.5: [True]}
    assert next_offered_rate(outcomes, 1037.5, MIN_STEPS) == 1037.5
    outcomes[1037.5].append(True)
    assert next_offered_rate(outcomes, 1037.5, MIN_STEPS) is None
    assert sustained_rate(outcomes) == 1037.5


def test_a_lucky_step_that_fails_its_second_offer_is_not_the_maximum() -> None:
    # The first step kept up at the drain rate, every higher one failed, then so did the retry.
    outcomes = {12_108.0: [True, False], 13_924.0: [False], 13_016.0: [False], 12_562.0: [False]}
    assert sustained_rate(outcomes) == 0.0
    assert next_offered_rate(outcomes, 12_108.0, MIN_STEPS) == pytest.approx(12_108.0 * 0.8)
    outcomes[9_686.4] = [True]
    assert next_offered_rate(outcomes, 9_686.4, MIN_STEPS) == 9_686.4
    outcomes[9_686.4].append(True)
    assert next_offered_rate(outcomes, 9_686.4, MIN_STEPS) is None
    assert sustained_rate(outcomes) == 9_686.4


def test_a_failed_retry_falls_back_to_the_next_rate_that_held() -> None:
    outcomes = {1000.0: [True], 1150.0: [True, False], 1322.5: [False], 1236.25: [False]}
    assert sustained_rate(outcomes) == 1000.0
    assert next_offered_rate(outcomes, 1150.0, MIN_STEPS) == 1000.0


def test_the_search_gives_up_when_no_rate_holds() -> None:
    with pytest.raises(RuntimeError, match="kept up with no offered rate"):
        next_offered_rate({11.0: [False]}, 11.0, MIN_STEPS)
