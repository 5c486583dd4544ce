"""Synthetic click-stream with planted rules a next-action model can learn.

numpy and the standard library only: the demo and the benchmarks import it without torch.

Users have sparse interests over categories; items have a category and a Zipf-like
popularity. Each user's events follow a view -> click -> add_to_cart -> purchase funnel
on one item at a time, in sessions (seconds apart inside, hours to days between). Two
rules are planted so tests can check what the model learned and what it explains:
  1. after add_to_cart of X the next event is purchase of X (``cart_purchase_prob``);
  2. for fixed pairs A -> B (``planted_pairs``), after a view of A the next event is a
     view of B (``pair_follow_prob``).
Actions also depend on the user and the session so far (what a next-action-type model learns):
  - buyers and browsers, and intent that builds: a user has a conversion multiplier
    ``2 * Beta(a, a)`` (mean 1, ``a = propensity_concentration``); view -> click has probability
    min(``max_funnel_prob``, ``click_prob`` x conversion x (1 + ``intent_gain`` x min(n,
    ``intent_cap``))), n the session's earlier views in the item's category; click -> add_to_cart
    likewise with ``cart_prob`` and the session's earlier clicks in the category;
  - satiation: after a purchase in a category, click -> add_to_cart in it is ``satiation``
    times as likely for the rest of the session (rule 1 is untouched);
  - the last item carted without its purchase (and not bought since) makes the next session,
    and only that one, open with a view of it (``return_to_cart_prob``), clicked with
    ``return_click_prob``; the funnel goes on from there.
Time: inside a session the gap after an event is the dwell on its page, 1 s + ``tempo`` x
Gamma(shape ``dwell_shape``, mean ``dwell_s`` of its action: view, click, add_to_cart,
purchase), so a checkout (add_to_cart to purchase) takes longer than a glance at a view;
between sessions it is 1 h + ``activity`` x Exponential(mean ``session_gap_days``). ``tempo``
and ``activity`` are per-user lognormal multipliers of mean 1 (log sd ``tempo_sigma``,
``activity_sigma``). Only a fresh view (no funnel step, no pair's follow-up) opens a new
session, with ``new_session_prob``. Output is deterministic for a given config.
"""

from __future__ import annotations

import json
from collections import Counter
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
    click_prob: float = 0.33  # view X -> click X, for an average user without same-category intent
    cart_prob: float = 0.25  # click X -> add_to_cart X, likewise
    zipf_exponent: float = 1.0
    interest_concentration: float = 0.3  # Dirichlet alpha: small = few favourite categories
    new_session_prob: float = 0.1
    span_days: float = 30.0  # users start at a uniform time in this span
    propensity_concentration: float = 0.7  # a of the conversion 2 * Beta(a, a): small = buyers vs browsers
    intent_gain: float = 0.5  # relative rise of click (cart) probability per earlier view (click) in category
    intent_cap: int = 3  # at most this many earlier views (clicks) count
    max_funnel_prob: float = 0.95  # no funnel step is certain
    satiation: float = 0.15  # cart probability factor in a category bought from this session
    return_to_cart_prob: float = 0.6  # the next session opens with a view of the abandoned cart item
    return_click_prob: float = 0.7  # the returning user clicks that item
    # Mean seconds on the page of a view, click, add_to_cart, purchase before the next event.
    dwell_s: tuple[float, float, float, float] = (20.0, 60.0, 120.0, 30.0)
    dwell_shape: float = 2.0  # Gamma shape of a dwell: above 1, quick leaves are rarer than exponential's
    session_gap_days: float = 0.5  # mean gap beyond an hour between sessions, for an average user
    tempo_sigma: float = 0.7  # sd of log tempo, the user's multiplier on gaps inside a session
    activity_sigma: float = 0.8  # sd of log activity, the user's multiplier on gaps between sessions


@dataclass(frozen=True)
class _Catalogue:
    category_items: list[np.ndarray]  # category -> item indices
    category_cdf: list[np.ndarray]  # category -> cumulative popularity of its items
    pairs: dict[int, int]  # planted A -> B, item indices
    item_category: np.ndarray  # item -> category


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
    item_category = np.zeros(config.n_items, dtype=np.int64)
    for c in range(config.n_categories):
        items = np.flatnonzero(category == c)
        if items.size == 0:  # keep every category non-empty
            items = np.array([c % config.n_items])
        item_category[items] = c
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
    return _Catalogue(category_items, category_cdf, pairs, item_category)


_KINDS: Final = (
    "running shoes", "tent", "backpack", "rain jacket", "water bottle", "headlamp", "sleeping bag",
    "trail map", "camping stove", "fleece", "hiking poles", "sunglasses", "gloves", "wool socks",
    "compass", "hammock", "first-aid kit", "cooler", "camp chair", "bike helmet",
)  # fmt: skip
_QUALITIES: Final = ("Light", "Classic", "Pro", "Compact", "Rugged", "Eco", "Trail", "Urban")


def item_catalogue(config: SyntheticConfig) -> list[dict[str, str]]:
    """A title and a short text per item, from its category, so explanations and cold start
    have a catalogue to read: ``{"item_id", "title", "text"}`` in item order."""
    category = _catalogue(config).item_category
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


_ACTIONS: Final = ("view", "click", "add_to_cart", "purchase")  # the order of dwell_s
_HOUR_MS: Final = 3600 * 1000


def _mean_one_lognormal(rng: np.random.Generator, sigma: float) -> float:
    # A mean of 1 keeps the configured gaps right for the average user.
    return float(rng.lognormal(-(sigma**2) / 2, sigma))


class _Shopper:
    """One user's traits, and what the current session has seen, while their events are drawn."""

    def __init__(self, config: SyntheticConfig, catalogue: _Catalogue, rng: np.random.Generator) -> None:
        self.config, self.catalogue, self.rng = config, catalogue, rng
        self.interests = np.cumsum(rng.dirichlet(np.full(config.n_categories, config.interest_concentration)))
        a = config.propensity_concentration
        self.conversion = 2.0 * float(rng.beta(a, a))
        self.tempo = _mean_one_lognormal(rng, config.tempo_sigma)
        self.activity = _mean_one_lognormal(rng, config.activity_sigma)
        self.abandoned: int | None = None  # the last item carted and not bought
        self._reset_session()

    def _reset_session(self) -> None:
        self.views: Counter[int] = Counter()  # category -> views so far in the session
        self.clicks: Counter[int] = Counter()  # category -> clicks so far in the session
        self.bought: set[int] = set()  # categories purchased from in the session
        self.returning = False  # the current event is the view of an abandoned cart's item

    def fresh_view(self) -> int:
        c = min(int(np.searchsorted(self.interests, self.rng.random())), self.config.n_categories - 1)
        items, cdf = self.catalogue.category_items[c], self.catalogue.category_cdf[c]
        return int(items[min(int(np.searchsorted(cdf, self.rng.random())), items.size - 1)])

    def _funnel_prob(self, base: float, earlier_in_category: int) -> float:
        intent = 1.0 + self.config.intent_gain * min(earlier_in_category, self.config.intent_cap)
        return min(self.config.max_funnel_prob, base * self.conversion * intent)

    def follow_up(self, item: int, action: str) -> tuple[int, str] | None:
        """The follow-up of (item, action), or None when the user moves on to a fresh view."""
        config, rng = self.config, self.rng
        category = int(self.catalogue.item_category[item])
        if action == "add_to_cart" and rng.random() < config.cart_purchase_prob:
            return item, "purchase"
        if action == "view":
            if item in self.catalogue.pairs and rng.random() < config.pair_follow_prob:
                return self.catalogue.pairs[item], "view"
            click_prob = self._funnel_prob(config.click_prob, self.views[category])
            if rng.random() < (config.return_click_prob if self.returning else click_prob):
                return item, "click"
        if action == "click":
            satiation = config.satiation if category in self.bought else 1.0
            if rng.random() < satiation * self._funnel_prob(config.cart_prob, self.clicks[category]):
                return item, "add_to_cart"
        return None

    def record(self, item: int, action: str, follow_up: tuple[int, str] | None) -> None:
        """Add (item, action) to the history, after its follow-up is drawn: intent counts earlier events."""
        category = int(self.catalogue.item_category[item])
        self.returning = False
        if action == "view":
            self.views[category] += 1
        elif action == "click":
            self.clicks[category] += 1
        elif action == "purchase":
            self.bought.add(category)
            if item == self.abandoned:
                self.abandoned = None
        elif follow_up is None:  # add_to_cart without its purchase
            self.abandoned = item

    def open_session(self) -> int:
        """Start a session; its first view is the abandoned cart's item or a fresh one."""
        self._reset_session()
        abandoned, self.abandoned = self.abandoned, None  # the cart calls back for one session only
        if abandoned is not None and self.rng.random() < self.config.return_to_cart_prob:
            self.returning = True
            return abandoned
        return self.fresh_view()

    def gap_ms(self, action: str, new_session: bool) -> int:
        """The time after an event of ``action`` until the user's next event."""
        if new_session:
            return _HOUR_MS + int(self.activity * self.rng.exponential(self.config.session_gap_days * DAY_MS))
        shape, mean_ms = self.config.dwell_shape, 1000 * self.config.dwell_s[_ACTIONS.index(action)]
        return 1000 + int(self.tempo * self.rng.gamma(shape, mean_ms / shape))


def _user_events(
    config: SyntheticConfig, catalogue: _Catalogue, rng: np.random.Generator
) -> list[tuple[int, int, str]]:
    """(ts_ms, item index, action) of one user, chronological."""
    shopper = _Shopper(config, catalogue, rng)
    n_events = max(2, int(rng.poisson(config.mean_events_per_user)))
    ts = config.start_ms + int(rng.uniform(0, config.span_days * DAY_MS))
    item, action = shopper.fresh_view(), "view"
    events = [(ts, item, action)]
    for _ in range(n_events - 1):
        follow_up = shopper.follow_up(item, action)
        shopper.record(item, action, follow_up)
        # Only a fresh view may open a new session: follow-ups stay close in time.
        new_session = follow_up is None and rng.random() < config.new_session_prob
        ts += shopper.gap_ms(action, new_session)
        if new_session:
            item, action = shopper.open_session(), "view"
        else:
            item, action = follow_up or (shopper.fresh_view(), "view")
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
