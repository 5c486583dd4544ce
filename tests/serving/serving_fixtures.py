"""Shared test data for tests/serving: the synthetic set-up and window helpers.

A uniquely named module (not conftest) so that tests can import it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract import ACTION_CODES, FIRST_ITEM_INDEX, TIMESTAMPS, WINDOW_ACTIONS, left_pad
from serving.data import UserSequence, user_sequences
from serving.synthetic import SyntheticConfig, planted_pairs
from serving.train import TrainConfig
from serving.vocab import ItemVocab

# Users from HELDOUT_FROM on are never trained on: the planted rules are checked on them.
SYNTHETIC = SyntheticConfig(n_users=1000, seed=3)
HELDOUT_FROM = 800
# Small and quick, yet enough for the planted rules; one network, no distillation (further
# networks and distillation are tested on their own; 8 epochs are too few for a teacher).
TRAINING = TrainConfig(
    epochs=8, patience=8, seed=0, max_networks=1, distillation=0.0, learning_rate=5e-3, batch_size=128
)


def is_heldout(user_id: str) -> bool:
    return int(user_id.lstrip("u")) >= HELDOUT_FROM


@dataclass(frozen=True)
class PlantedCases:
    """Held-out windows ending in a rule's cause, and the item the rule says comes next."""

    windows: list[UserSequence]
    expected: list[str]


def planted_cases(heldout_events: Iterable[dict[str, Any]]) -> dict[str, PlantedCases]:
    """``cart``: windows ending in add_to_cart X (expect X); ``pair``: in a view of A (expect B)."""
    pairs = planted_pairs(SYNTHETIC)
    cases = {"cart": PlantedCases([], []), "pair": PlantedCases([], [])}
    for seq in user_sequences(heldout_events):
        for t, (item, action) in enumerate(zip(seq.items, seq.actions, strict=True)):
            if action == ACTION_CODES["add_to_cart"]:
                cases["cart"].windows.append(seq.head(t + 1))
                cases["cart"].expected.append(item)
            elif action == ACTION_CODES["view"] and item in pairs:
                cases["pair"].windows.append(seq.head(t + 1))
                cases["pair"].expected.append(pairs[item])
    return cases


@dataclass(frozen=True)
class TritonBatch:
    """Windows as the stream sends them: item id strings, int32 actions, int64 epoch ms."""

    item_ids: np.ndarray  # object [B, W]
    actions: np.ndarray  # int32 [B, W]
    timestamps_ms: np.ndarray  # int64 [B, W]


def triton_batch(sequences: list[UserSequence], window: int) -> TritonBatch:
    """The newest ``window`` events of each sequence, left-padded with ""/0/0."""
    return TritonBatch(
        left_pad([seq.items for seq in sequences], window, "", object),
        left_pad([seq.actions for seq in sequences], window, 0, WINDOW_ACTIONS.dtype),
        left_pad([seq.timestamps_ms for seq in sequences], window, 0, TIMESTAMPS.dtype),
    )


def item_of(vocab: ItemVocab, index: int) -> str:
    """The item id of a vocabulary index (never padding or unknown)."""
    assert index >= FIRST_ITEM_INDEX, f"index {index} is padding or unknown, not an item"
    return vocab.items[index - FIRST_ITEM_INDEX]
