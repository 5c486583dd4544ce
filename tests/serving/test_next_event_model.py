"""The session's synthetic model predicts the next event's action and its time better than the
user's own history and everyone's, and its occlusion finds what drove a purchase."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from serving_fixtures import PlantedCases, is_heldout

from contract import ACTIONS
from serving.checkpoint import Checkpoint
from serving.data import encode_windows, user_sequences
from serving.next_event_evaluation import compare_next_event, next_event_cases
from serving.serving_module import ServingModule

pytestmark = pytest.mark.unit

PURCHASE = ACTIONS.index("purchase")


def test_the_model_beats_the_users_own_history_and_everyones_on_action_and_time(
    checkpoint: Checkpoint, synthetic_events: list[dict[str, Any]]
) -> None:
    train = user_sequences(e for e in synthetic_events if not is_heldout(e["user_id"]))
    heldout = user_sequences(e for e in synthetic_events if is_heldout(e["user_id"]))
    cases = next_event_cases(heldout, "test")
    assert len(cases) > 150
    metrics = compare_next_event(checkpoint.model, checkpoint.vocab, train, cases)
    model, own, everyone = metrics["model"], metrics["own_history"], metrics["global"]
    assert model["action_log_loss"] < min(own["action_log_loss"], everyone["action_log_loss"])
    assert model["purchase_auc"] > max(own["purchase_auc"], everyone["purchase_auc"])
    assert model["log_gap_median_abs_error"] < min(
        own["log_gap_median_abs_error"], everyone["log_gap_median_abs_error"]
    )
    # The median is a median: about half the next events come sooner (test events are few).
    assert 0.35 < model["gap_below_p50"] < 0.65


def test_after_a_cart_a_purchase_is_likely_and_the_cart_event_drove_it(
    checkpoint: Checkpoint, planted: dict[str, PlantedCases]
) -> None:
    cases = planted["cart"].windows[:200]
    module = ServingModule(checkpoint.model, top_k=5).eval()
    with torch.no_grad():
        served = module(*(torch.from_numpy(x) for x in encode_windows(cases, checkpoint.vocab, 50)))
    purchase = served.next_actions[:, PURCHASE].numpy()
    assert np.mean(purchase) > 0.5
    # The top item is the carted one (the planted rule): given it, a purchase is likelier still.
    assert np.mean(served.item_actions[:, 0, PURCHASE].numpy()) > np.mean(purchase)
    strongest = served.action_attributions[:, PURCHASE].argmax(dim=1).numpy()
    assert np.mean(strongest == 49) > 0.8  # the newest column: the add_to_cart
