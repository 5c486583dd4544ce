"""The record's next event: action probabilities, time quantiles, and the events that drove them."""

from __future__ import annotations

import numpy as np
import pytest

from contract import ACTIONS
from stream.explain import MIN_WEIGHT
from stream.next_event import MAX_DRIVERS, QUANTILE_NAMES, actions_if_next, next_events
from stream.records import WindowEvent
from stream.scored_batch import ScoredBatch
from stream.wording import ItemTitles

pytestmark = pytest.mark.unit

NOW = 1_700_000_600_000
WINDOW = (
    WindowEvent("e1", "tent", "view", NOW - 400_000),
    WindowEvent("e2", "stove", "click", NOW - 300_000),
    WindowEvent("e3", "boots", "view", NOW - 200_000),
    WindowEvent("e4", "boots", "add_to_cart", NOW - 100_000),
    WindowEvent("e5", "socks", "view", NOW - 50_000),
)
LENGTH = 6  # model columns: one more than the window, so column 0 is padding
PURCHASE = ACTIONS.index("purchase")


def scored(
    *,
    action_weights: np.ndarray,
    next_actions: list[float] | None = None,
    gap_quantiles: list[float] | None = None,
) -> ScoredBatch:
    rows = action_weights.shape[0]
    return ScoredBatch(
        model_version="4",
        items=[["boots", "tent"]] * rows,
        scores=np.full((rows, 2), 0.5, dtype=np.float32),
        attributions=np.zeros((rows, 2, LENGTH), dtype=np.float32),
        next_actions=np.tile(np.array(next_actions or [0.5, 0.2, 0.1, 0.2], dtype=np.float32), (rows, 1)),
        item_actions=np.stack(
            [np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]], dtype=np.float32)] * rows
        ),
        gap_quantiles=np.tile(
            np.array(gap_quantiles or [4.0, 20.0, 150.0, 4000.0, 90000.0], dtype=np.float32), (rows, 1)
        ),
        action_attributions=action_weights.astype(np.float32),
    )


def weights_for(purchase_row: list[float]) -> np.ndarray:
    """One window's attributions: the purchase row as given, the others on the newest event."""
    weights = np.zeros((1, len(ACTIONS), LENGTH))
    weights[0, :, -1] = 1.0
    weights[0, PURCHASE] = purchase_row
    return weights


def test_drivers_are_the_strongest_events_above_the_floor_and_never_padding() -> None:
    # Padding (column 0) carries the largest weight a faulty model could give it.
    purchase = [0.5, 0.05, 0.0, 0.1, 0.3, MIN_WEIGHT / 2]
    (record,) = next_events([WINDOW], scored(action_weights=weights_for(purchase)), ItemTitles(), NOW)
    assert record is not None
    cited = record["drivers"]["purchase"]
    assert [driver["event_id"] for driver in cited] == ["e4", "e3", "e1"]
    assert [driver["weight"] for driver in cited] == [0.3, 0.1, 0.05]
    assert len(cited) <= MAX_DRIVERS
    assert cited[0] == {"event_id": "e4", "item_id": "boots", "action": "add_to_cart", "ts_ms": NOW - 100_000,
                        "weight": 0.3}  # fmt: skip
    assert [driver["event_id"] for driver in record["drivers"]["view"]] == ["e5"]


def test_probabilities_and_quantiles_are_keyed_by_action_and_level() -> None:
    (record,) = next_events([WINDOW], scored(action_weights=weights_for([0.0] * LENGTH)), ItemTitles(), NOW)
    assert record is not None
    assert record["actions"] == {"view": 0.5, "click": 0.2, "add_to_cart": 0.1, "purchase": 0.2}
    assert list(record["seconds_until"]) == list(QUANTILE_NAMES) == ["p10", "p25", "p50", "p75", "p90"]
    assert record["seconds_until"]["p50"] == 150.0
    assert record["drivers"]["purchase"] == []


def test_seconds_a_model_serves_below_zero_are_published_as_zero() -> None:
    batch = scored(action_weights=weights_for([0.0] * LENGTH), gap_quantiles=[-0.26, -0.01, 2.2, 11.9, 24.3])
    (record,) = next_events([WINDOW], batch, ItemTitles(), NOW)
    assert record is not None
    assert record["seconds_until"] == {"p10": 0.0, "p25": 0.0, "p50": 2.2, "p75": 11.9, "p90": 24.3}


def test_the_sentence_names_the_likeliest_action_the_purchase_driver_and_the_median_time() -> None:
    weights = weights_for([0.0, 0.0, 0.0, 0.2, 0.8, 0.0])
    (record,) = next_events([WINDOW], scored(action_weights=weights), ItemTitles(boots="Trail boots"), NOW)
    assert record is not None
    assert record["sentence"] == (
        "Next most likely a view (50%); a purchase 20%, mostly because you added Trail boots to your "
        "cart (80% of the evidence); half the time within 2 minutes."
    )


def test_a_version_without_next_event_outputs_publishes_none() -> None:
    batch = ScoredBatch("3", [["boots"]], np.ones((1, 1), np.float32), np.zeros((1, 1, LENGTH), np.float32))
    assert next_events([WINDOW], batch, ItemTitles(), NOW) == [None]
    assert actions_if_next(batch, np.array([[0]])) == [[None]]


def test_item_actions_follow_the_published_order() -> None:
    batch = scored(action_weights=weights_for([0.0] * LENGTH))
    (row,) = actions_if_next(batch, np.array([[1, 0]]))
    assert row[0] is not None and row[1] is not None
    assert row[0]["purchase"] == pytest.approx(0.7) and row[1]["view"] == pytest.approx(0.7)
