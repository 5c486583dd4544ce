"""The synthetic generator: deterministic, contract-valid, a funnel, and the planted rules."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract import ACTIONS
from serving.data import read_events_jsonl
from serving.synthetic import (
    DAY_MS,
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


# Gaps inside a session stay minutes; between sessions they are at least an hour.
SESSION_GAP_MS = 3600 * 1000


@pytest.fixture(scope="module")
def sessions(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """All sessions, user after user, each user's in time order."""
    found = []
    for user_events in by_user(events).values():
        session = [user_events[0]]
        for previous, event in itertools.pairwise(user_events):
            if event["ts"] - previous["ts"] >= SESSION_GAP_MS:
                found.append(session)
                session = []
            session.append(event)
        found.append(session)
    return found


def next_sessions(
    sessions: list[list[dict[str, Any]]],
) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Each session with the same user's next one."""
    return [(a, b) for a, b in itertools.pairwise(sessions) if a[0]["user_id"] == b[0]["user_id"]]


def category_by_item() -> dict[str, str]:
    return {
        entry["item_id"]: entry["text"].split(": a ")[1].split(" from")[0] for entry in item_catalogue(CONFIG)
    }


def rate(hits: list[bool]) -> float:
    return sum(hits) / len(hits)


def test_intent_builds_and_a_purchase_sates_within_a_session(sessions: list[list[dict[str, Any]]]) -> None:
    category = category_by_item()
    carted: dict[str, list[bool]] = defaultdict(list)  # after a click, by the session's history
    clicked: dict[str, list[bool]] = defaultdict(list)  # after a view, by the session's history
    for session in sessions:
        views: Counter[str] = Counter()
        clicks: Counter[str] = Counter()
        bought: set[str] = set()
        for event, following in itertools.pairwise(session):
            c = category[event["item_id"]]
            if event["action"] == "click":
                history = "bought" if c in bought else "2+" if clicks[c] >= 2 else str(clicks[c])
                carted[history].append(following["action"] == "add_to_cart")
                clicks[c] += 1
            elif event["action"] == "view":
                clicked["2+" if views[c] >= 2 else str(views[c])].append(following["action"] == "click")
                views[c] += 1
            elif event["action"] == "purchase":
                bought.add(c)
    assert len(carted["2+"]) > 50 and len(carted["bought"]) > 50
    # Consideration before conversion: earlier clicks (views) in the category raise the cart (click) rate.
    assert rate(carted["2+"]) > rate(carted["0"]) + 0.1
    assert rate(clicked["2+"]) > rate(clicked["0"]) + 0.1
    # A purchase sates its category: carting there again is much rarer than after earlier clicks
    # without a purchase.
    assert rate(carted["bought"]) < 0.5 * rate(carted["1"] + carted["2+"])


def split_half_correlation(
    statistic: Callable[[list[dict[str, Any]]], float | None], users: list[list[dict[str, Any]]]
) -> float:
    """How well a user's first half of events predicts their second half, across users."""
    pairs = [(statistic(u[: len(u) // 2]), statistic(u[len(u) // 2 :])) for u in users]
    first, second = zip(*[(a, b) for a, b in pairs if a is not None and b is not None], strict=True)
    return float(np.corrcoef(first, second)[0, 1])


def purchase_share(events: list[dict[str, Any]]) -> float:
    return sum(e["action"] == "purchase" for e in events) / len(events)


def log_median_gap(events: list[dict[str, Any]], between_sessions: bool) -> float | None:
    # The log, as user paces spread over orders of magnitude.
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(events)]
    chosen = [g for g in gaps if (g >= SESSION_GAP_MS) == between_sessions]
    return float(np.log(np.median(chosen))) if chosen else None


def test_users_keep_their_own_purchase_share_and_pace(events: list[dict[str, Any]]) -> None:
    # Per-user traits make a user's own past a real baseline; without them these would be about 0.
    users = list(by_user(events).values())
    assert split_half_correlation(purchase_share, users) > 0.2
    assert split_half_correlation(lambda u: log_median_gap(u, between_sessions=False), users) > 0.3
    assert split_half_correlation(lambda u: log_median_gap(u, between_sessions=True), users) > 0.2


def test_checkout_takes_longer_than_a_view_and_sessions_are_hours_to_days_apart(
    sessions: list[list[dict[str, Any]]],
) -> None:
    before: dict[str, list[int]] = defaultdict(list)
    for session in sessions:
        for previous, event in itertools.pairwise(session):
            before[event["action"]].append(event["ts"] - previous["ts"])
    median = {action: np.median(gaps) for action, gaps in before.items()}
    assert median["purchase"] > 2 * median["view"]
    assert median["add_to_cart"] > median["click"]
    assert median["view"] < 60_000
    between = [b[0]["ts"] - a[-1]["ts"] for a, b in next_sessions(sessions)]
    low, high = np.percentile(between, [10, 90])
    assert low < 6 * SESSION_GAP_MS and high > DAY_MS / 2


def test_an_abandoned_cart_opens_the_next_session(sessions: list[list[dict[str, Any]]]) -> None:
    abandoned_opens: list[bool] = []  # the next session opens with the abandoned item
    bought_opens: list[bool] = []  # the control: it opens with an item bought in the session before
    for session, following in next_sessions(sessions):
        abandoned = None
        for event, after in itertools.pairwise([*session, {"action": "(session end)"}]):
            if event["action"] == "add_to_cart" and after["action"] != "purchase":
                abandoned = event["item_id"]
            elif event["action"] == "purchase":
                bought_opens.append(following[0]["item_id"] == event["item_id"])
                abandoned = None if abandoned == event["item_id"] else abandoned
        if abandoned is not None:
            abandoned_opens.append(following[0]["item_id"] == abandoned)
    assert len(abandoned_opens) > 15 and len(bought_opens) > 100
    assert rate(abandoned_opens) > 0.4
    assert rate(abandoned_opens) > 4 * rate(bought_opens)
