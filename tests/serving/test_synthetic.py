"""The synthetic generator: deterministic, contract-valid, a funnel, and the planted rules."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from contract import ACTIONS
from serving.data import read_events_jsonl
from serving.synthetic import (
    SyntheticConfig,
    generate_events,
    item_catalogue,
    planted_pairs,
    write_events_jsonl,
)

pytestmark = pytest.mark.unit

CONFIG = SyntheticConfig(n_users=300, n_items=200, n_categories=10, seed=11)


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return generate_events(CONFIG)


def by_user(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    users: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        users[event["user_id"]].append(event)
    return users


def test_same_seed_same_events_other_seed_other_events(events: list[dict[str, Any]]) -> None:
    assert generate_events(CONFIG) == events
    other = SyntheticConfig(n_users=300, n_items=200, n_categories=10, seed=12)
    assert generate_events(other) != events
    assert planted_pairs(other) != planted_pairs(CONFIG)


def test_events_match_the_input_contract(events: list[dict[str, Any]]) -> None:
    assert len(events) > 300 * 20
    for event in events:
        assert set(event) == {"event_id", "user_id", "item_id", "action", "ts"}
        assert re.fullmatch(r"u\d{5}", event["user_id"])
        assert re.fullmatch(r"i\d{4}", event["item_id"])
        assert event["action"] in ACTIONS
        assert isinstance(event["ts"], int) and event["ts"] >= CONFIG.start_ms
    assert len({e["event_id"] for e in events}) == len(events)
    timestamps = [e["ts"] for e in events]
    assert timestamps == sorted(timestamps)
    assert len({e["user_id"] for e in events}) == CONFIG.n_users


def test_funnel_steps_follow_the_previous_step_on_the_same_item(events: list[dict[str, Any]]) -> None:
    counts = Counter(e["action"] for e in events)
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"] > 0
    step_before = {"click": "view", "add_to_cart": "click", "purchase": "add_to_cart"}
    for user_events in by_user(events).values():
        assert user_events[0]["action"] == "view"
        for previous, event in itertools.pairwise(user_events):
            if event["action"] in step_before:
                assert previous["action"] == step_before[event["action"]]
                assert previous["item_id"] == event["item_id"]


def test_planted_rules_hold_at_the_configured_rates(events: list[dict[str, Any]]) -> None:
    pairs = planted_pairs(CONFIG)
    assert len(pairs) == CONFIG.n_pairs
    assert not set(pairs) & set(pairs.values()), "rules must not chain"
    cart = cart_bought = pair_views = pair_followed = other = other_to_target = 0
    targets = set(pairs.values())
    for user_events in by_user(events).values():
        for previous, event in itertools.pairwise(user_events):
            if previous["action"] == "add_to_cart":
                cart += 1
                cart_bought += event["action"] == "purchase" and event["item_id"] == previous["item_id"]
            elif previous["action"] == "view" and previous["item_id"] in pairs:
                pair_views += 1
                pair_followed += event["action"] == "view" and event["item_id"] == pairs[previous["item_id"]]
            else:
                other += 1
                other_to_target += event["action"] == "view" and event["item_id"] in targets
    assert cart > 200 and pair_views > 200
    assert cart_bought / cart == pytest.approx(CONFIG.cart_purchase_prob, abs=0.05)
    assert pair_followed / pair_views == pytest.approx(CONFIG.pair_follow_prob, abs=0.05)
    # Without its cause a pair's target is rare: the rule is what makes it predictable.
    assert other_to_target / other / len(targets) < 0.02


def test_json_lines_round_trip(events: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    assert write_events_jsonl(events[:100], path) == 100
    assert list(read_events_jsonl(path)) == events[:100]


def test_the_catalogue_titles_every_item_once_by_its_category() -> None:
    config = SyntheticConfig(n_users=50, n_items=60, n_categories=4, seed=2)
    catalogue = item_catalogue(config)
    used = {event["item_id"] for event in generate_events(config)}
    assert used <= {entry["item_id"] for entry in catalogue}
    assert len({entry["title"] for entry in catalogue}) == len(catalogue) == 60
    # Items of one category share its kind of product, which their text names.
    kinds = {entry["text"].split(": a ")[1].split(" from")[0] for entry in catalogue}
    assert len(kinds) == 4
    assert all(entry["text"].startswith(entry["title"]) for entry in catalogue)
