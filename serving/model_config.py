"""The model's hyperparameters, saved with every checkpoint and export."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    n_items: int = 0  # vocabulary size with padding and unknown; train() sets it from the vocab
    window: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.5
    # Never score the window's own items (training loss and serving): for data where users
    # (almost) never return to an item, train() turns it on (see TrainConfig.exclude_seen).
    exclude_seen: bool = False
    # Most frequent successors kept per item for the transition prior: enough for the bulk of
    # the observed transitions, and a fixed-size table to serve.
    successors: int = 32
    # Networks trained apart whose scores are averaged (see TrainConfig.max_networks).
    networks: int = 1
    # Vocabulary indices from this one on were added from their texts after training
    # (serving.cold_start); 0: every item was learned from interactions.
    learned_items: int = 0

    def to_dict(self) -> dict[str, int | float | str]:
        return asdict(self)
