"""MovieLens 100K split for the cold-start benchmark: the newest items held out of training.

An item's age is the time of its first rating; the newest share of items (all of their
ratings) is removed from the training sequences. Test cases are each user's last event of the
full sequences, input the full sequence before it, split by whether the target is held out.
Item texts are ``title. Genres: a, b`` from ``u.item`` and ``u.genre`` beside ``u.data``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.data import UserSequence
from serving.evaluation import Cases

__all__ = ["ColdSplit", "cold_split", "every_cold_event", "movielens_texts"]


@dataclass(frozen=True)
class ColdSplit:
    cold_items: frozenset[str]
    train: list[UserSequence]  # full sequences without any held-out item
    cold_test: Cases  # last events whose target is held out
    warm_test: Cases  # last events whose target is not


def cold_split(sequences: Sequence[UserSequence], cold_share: float) -> ColdSplit:
    first_seen: dict[str, int] = {}
    for seq in sequences:
        for item, ts in zip(seq.items, seq.timestamps_ms, strict=True):
            first_seen[item] = min(ts, first_seen.get(item, ts))
    newest_first = sorted(first_seen, key=lambda item: (-first_seen[item], item))
    cold = frozenset(newest_first[: math.ceil(cold_share * len(newest_first))])
    evaluated = [seq for seq in sequences if len(seq) >= 3]
    cold_rows = [seq for seq in evaluated if seq.items[-1] in cold]
    warm_rows = [seq for seq in evaluated if seq.items[-1] not in cold]
    return ColdSplit(
        cold_items=cold,
        train=[seq.keeping(i for i, item in enumerate(seq.items) if item not in cold) for seq in sequences],
        cold_test=Cases([s.head(len(s) - 1) for s in cold_rows], [s.items[-1] for s in cold_rows]),
        warm_test=Cases([s.head(len(s) - 1) for s in warm_rows], [s.items[-1] for s in warm_rows]),
    )


def every_cold_event(sequences: Sequence[UserSequence], cold: frozenset[str]) -> Cases:
    """Every event of a held-out item after a user's first event, input the events before it."""
    inputs, targets = [], []
    for seq in sequences:
        for t in range(1, len(seq)):
            if seq.items[t] in cold:
                inputs.append(seq.head(t))
                targets.append(seq.items[t])
    return Cases(inputs, targets)


def movielens_texts(ratings: Path) -> dict[str, str]:
    """Item id -> ``title. Genres: ...`` from ``u.item`` and ``u.genre`` beside ``u.data``."""
    genres = [
        line.split("|")[0]
        for line in ratings.with_name("u.genre").read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    texts = {}
    for line in ratings.with_name("u.item").read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        flags = fields[-len(genres) :]
        named = [name for name, flag in zip(genres, flags, strict=True) if flag == "1" and name != "unknown"]
        texts[fields[0]] = f"{fields[1]}. Genres: {', '.join(named) or 'unknown'}"
    return texts
