"""How training runs: the choices it makes on validation data, its budget and its pace."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["TrainConfig"]


def _default_threads() -> int:
    """OMP_NUM_THREADS when set, as torch itself reads it (a container's CPU share, processes
    sharing a machine: threads beyond the cores spin against each other), else 2."""
    return int(os.environ.get("OMP_NUM_THREADS") or 2)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 256  # samples, each one window and its target
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    # Share of input items hidden as "unknown" (action and time stay), so the model copes with
    # items it has never seen. Hiding more regularises more but pushes the model towards
    # popular items, which a recommender that should reach past the head cannot afford
    # (docs/2026-11-model-experiments.md).
    unknown_rate: float = 0.05
    # Exclude the window's own items from the loss and from serving. None: decide from the
    # data, on when under ``repeat_threshold`` of next items repeat one in the window.
    exclude_seen: bool | None = None
    repeat_threshold: float = 0.01
    # Weights of the transition prior tried on validation data once the network is trained
    # (0: the network alone).
    prior_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    # Networks trained one after another, each on its share of the time budget, whose scores
    # are averaged. Each one adds 0.35-0.75x one network's inference cost at batch 32 (by
    # machine, docs/2026-11-30-training-budget.md), so it must raise validation NDCG@10 by
    # ``network_min_gain`` to be kept.
    max_networks: int = 1
    network_min_gain: float = 0.01
    # Born-again distillation (Furlanello et al., ICML 2018): a network's budget is split
    # between a teacher and a student of the same architecture whose item loss is
    # (1 - this) x the labels' + this x the teacher's predictions'; the student is kept where
    # its validation NDCG@10 is the higher. The teacher's spread over the items it ranks
    # close to the label carries what one label cannot, which shows most in the hit rates,
    # at one network's serving cost (docs/2026-11-30-training-budget.md). It needs a teacher
    # that settles in half the budget: 0 (one network, the whole budget) for budgets of a few
    # minutes, as the demo's.
    distillation: float = 0.5
    # Logit-adjusted loss (Menon et al., ICLR 2021): the loss sees logits + this * log(each
    # item's share of training interactions), serving sees the raw logits. Popularity
    # confounds what users were shown and so what they chose (PDA, Zhang et al., SIGIR 2021);
    # the raw logits then learn how much the window, not the item's popularity, speaks for an
    # item. 0: the plain loss.
    logit_adjustment: float = 0.0
    # Share of the item table trained as the average of each item's ``graph_neighbours`` most
    # frequent neighbours in the sequences (serving.item_graph): rare items learn from their
    # neighbours' data, so training converges in fewer epochs: what a slow machine or a large
    # data set needs within its budget (docs/2026-11-30-training-budget.md). 0: a plain table.
    graph_share: float = 0.5
    graph_neighbours: int = 10
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    # The learning rate decays over ``epochs`` or the time budget, whichever ends first;
    # training stops after the epoch that crosses it.
    time_budget_s: float | None = None
    max_validation_users: int = 5000  # validated during training; the final metrics use all
    threads: int = field(default_factory=_default_threads)
    seed: int = 0
