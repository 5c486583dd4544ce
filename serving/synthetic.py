"""Synthetic click-stream with planted rules a next-action model can learn.

numpy and the standard library only: the demo and the benchmarks import it without torch.

Users have sparse interests over categories; items have a category and a Zipf-like
popularity. Each user's events follow a view -> click -> add_to_cart -> purchase funnel
on one item at a time, in sessions (seconds apart inside, hours to days between). Two
rules are planted so tests can check what the model learned and what it explains:
  1. after add_to_cart of X the next event is purchase of X (``cart_purchase_prob``);
  2. for fixed pairs A -> B (``planted_pairs``), after a view of A the next event is a
     view of B (``pair_follow_prob``).
Output is deterministic for a given config.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

__all__ = [
    "DAY_MS",
    "SyntheticConfig",
    "generate_events",
    "item_catalogue",
    "planted_pairs",
    "write_events_jsonl",
]

DAY_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 1000
    n_items: int = 500
    n_categories: int = 20
    mean_events_per_user: float = 40.0
    seed: int = 0
    start_ms: int = 1_700_000_000_000
    n_pairs: int = 20
    cart_purchase_prob: float = 0.9
    pair_follow_prob: float = 0.9
    click_prob: float = 0.35  # view X -> click X
    cart_prob: float = 0.3  # click X -> add_to_cart X
    zipf_exponent: float = 1.0
    interest_concentration: float = 0.3  # Dirichlet alpha: small = few favourite categories
    new_session_prob: float = 0.1
    span_days: float = 30.0  # users start at a uniform time in this span


@dataclass(frozen=True)
class _Catalogue:
    category_items: list[np.ndarray]  # category -> item indices
    category_cdf: list[np.ndarray]  # category -> cumulative popularity of its items
    pairs: dict[int, int]  # planted A -> B, item indices


def _item_id(index: int) -> str:
    return f"i{index:04d}"


def _user_id(index: int) -> str:
    return f"u{index:05d}"


def _catalogue(config: SyntheticConfig) -> _Catalogue:
    rng = np.random.default_rng([config.seed, 0])
    # Popularity rank is a random permutation, so popular items spread over categories.
    rank = rng.permutation(config.n_items)
    popularity = 1.0 / (1.0 + rank) ** config.zipf_exponent
    category = rng.integers(0, config.n_categories, size=config.n_items)
    category_items, category_cdf = [], []
    for c in range(config.n_categories):
        items = np.flatnonzero(category == c)
        if items.size == 0:  # keep every category non-empty
            items = np.array([c % config.n_items])
        weights = popularity[items]
        category_items.append(items)
        category_cdf.append(np.cumsum(weights) / weights.sum())
    # Sources come from the popular quarter so each pair is seen often enough to learn;
    # targets are never sources, so rules do not chain.
    by_popularity = np.argsort(rank)
    n_pairs = min(config.n_pairs, config.n_items // 4)
    sources = rng.choice(by_popularity[: max(n_pairs, config.n_items // 4)], n_pairs, replace=False)
    others = np.setdiff1d(np.arange(config.n_items), sources)
    targets = rng.choice(others, n_pairs, replace=False)
    pairs = {int(a): int(b) for a, b in zip(sources, targets, strict=True)}
    return _Catalogue(category_items, category_cdf, pairs)


_KINDS: Final = (
    "running shoes", "tent", "backpack", "rain jacket", "water bottle", "headlamp", "sleeping bag",
    "trail map", "camping stove", "fleece", "hiking poles", "sunglasses", "gloves", "wool socks",
    "compass", "hammock", "first-aid kit", "cooler", "camp chair", "bike helmet",
)  # fmt: skip
_QUALITIES: Final = ("Light", "Classic", "Pro", "Compact", "Rugged", "Eco", "Trail", "Urban")


def item_catalogue(config: SyntheticConfig) -> list[dict[str, str]]:
    """A title and a short text per item, from its category, so explanations and cold start
    have a catalogue to read: ``{"item_id", "title", "text"}`` in item order."""
    catalogue = _catalogue(config)
    category = np.zeros(config.n_items, dtype=np.int64)
    for c, items in enumerate(catalogue.category_items):
        category[items] = c
    entries = []
    for index in range(config.n_items):
        kind = _KINDS[int(category[index]) % len(_KINDS)]
        title = f"{_QUALITIES[index % len(_QUALITIES)]} {kind} {index}"
        text = f"{title}: a {kind} from collection {int(category[index])}."
        entries.append({"item_id": _item_id(index), "title": title, "text": text})
    return entries


def planted_pairs(config: SyntheticConfig) -> dict[str, str]:
    """The planted rule 2 as item ids: after viewing A the user views B next."""
    return {_item_id(a): _item_id(b) for a, b in _catalogue(config).pairs.items()}


def _user_events(
    config: SyntheticConfig, catalogue: _Catalogue, rng: np.random.Generator
) -> list[tuple[int, int, str]]:
    """(ts_ms, item index, action) of one user, chronological."""
    interests = np.cumsum(rng.dirichlet(np.full(config.n_categories, config.interest_concentration)))

    def fresh_view() -> int:
        c = min(int(np.searchsorted(interests, rng.random())), config.n_categories - 1)
        items, cdf = catalogue.category_items[c], catalogue.category_cdf[c]
        return int(items[min(int(np.searchsorted(cdf, rng.random())), items.size - 1)])

    def next_event(item: int, action: str) -> tuple[int, str] | None:
        """The follow-up of (item, action), or None when the user moves on to a fresh view."""
        if action == "add_to_cart" and rng.random() < config.cart_purchase_prob:
            return item, "purchase"
        if action == "view":
            if item in catalogue.pairs and rng.random() < config.pair_follow_prob:
                return catalogue.pairs[item], "view"
            if rng.random() < config.click_prob:
                return item, "click"
        if action == "click" and rng.random() < config.cart_prob:
            return item, "add_to_cart"
        return None

    n_events = max(2, int(rng.poisson(config.mean_events_per_user)))
    ts = config.start_ms + int(rng.uniform(0, config.span_days * DAY_MS))
    item, action = fresh_view(), "view"
    events = [(ts, item, action)]
    for _ in range(n_events - 1):
        follow_up = next_event(item, action)
        # Only a fresh view may start a new session: follow-ups stay close in time.
        if follow_up is None and rng.random() < config.new_session_prob:
            ts += int(rng.exponential(0.5 * DAY_MS)) + 3600 * 1000
        else:
            ts += int(rng.exponential(30_000)) + 1000
        item, action = follow_up or (fresh_view(), "view")
        events.append((ts, item, action))
    return events


def generate_events(config: SyntheticConfig) -> list[dict[str, Any]]:
    """Input-contract event dicts for all users, sorted by ``ts`` (ties by user, then order)."""
    catalogue = _catalogue(config)
    rng = np.random.default_rng([config.seed, 1])
    rows: list[tuple[int, int, int, int, str]] = []
    for user in range(config.n_users):
        for seq, (ts, item, action) in enumerate(_user_events(config, catalogue, rng)):
            rows.append((ts, user, seq, item, action))
    rows.sort()
    return [
        {
            "event_id": f"e{user:05d}-{seq:05d}",
            "user_id": _user_id(user),
            "item_id": _item_id(item),
            "action": action,
            "ts": ts,
        }
        for ts, user, seq, item, action in rows
    ]


def write_events_jsonl(events: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write one JSON object per line; returns the number of events written."""
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event, separators=(",", ":")) + "\n")
            count += 1
    return count
