"""Deletion tests on the session's synthetic model, whose planted rule says what drives an item."""

from __future__ import annotations

import pytest
from serving_fixtures import PlantedCases

from serving.checkpoint import Checkpoint
from serving.faithfulness import METHODS, deletion_test, explained_share

pytestmark = pytest.mark.unit


def test_deleting_the_cited_event_of_a_planted_rule_removes_the_item(
    checkpoint: Checkpoint, planted: dict[str, PlantedCases]
) -> None:
    """After a view of A the model ranks B first because of that view: the served attribution
    must find it, so deleting its strongest event loses the item far more often than chance."""
    cases = planted["pair"].windows[:200]
    outcomes = {
        (o.method, o.deleted): o
        for o in deletion_test(checkpoint.model, checkpoint.vocab, cases, sizes=(1, 2))
    }
    assert {method for method, _ in outcomes} == set(METHODS)
    occlusion, chance = outcomes["occlusion", 1], outcomes["random", 1]
    assert occlusion.cases == chance.cases > 100
    assert occlusion.left_top_n > 0.8
    assert occlusion.left_top_n > 2 * chance.left_top_n
    assert occlusion.log_prob_drop > chance.log_prob_drop
    assert outcomes["occlusion", 2].log_prob_drop > outcomes["random", 2].log_prob_drop


def test_the_explained_positions_account_for_a_share_of_the_prediction(
    checkpoint: Checkpoint, planted: dict[str, PlantedCases]
) -> None:
    cases = planted["pair"].windows[:100]
    few, many = (
        explained_share(checkpoint.model, checkpoint.vocab, cases, positions) for positions in (1, 8)
    )
    assert 0 < few.events_in_reach < many.events_in_reach <= 1
    # The planted cause is the newest event: one position already carries most of the effect.
    assert few.effect_share > 0.5
    # More positions must not lose the effect; a share above 1 (the rest of the window had
    # lowered the item) is already all of it, so more positions may bring it back towards 1.
    assert many.effect_share >= min(few.effect_share, 1.0) - 0.05
