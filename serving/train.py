"""Train the next-item model on user sequences and save a checkpoint directory.

Leave-one-out split, a teacher network trained on an annealed schedule that fits its share
of the time budget, a student distilled from it on the rest, early stopping on validation
NDCG@10, then the choices of :mod:`serving.model_selection`; the saved checkpoint
(:mod:`serving.checkpoint`) carries the model's and the baselines' validation and test metrics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from serving.baselines import PopularityScorer, TransitionScorer
from serving.checkpoint import Checkpoint, save_checkpoint
from serving.data import UserSequence, training_samples
from serving.evaluation import Catalogue, History, ScoreFn, Split, evaluate, leave_one_out
from serving.item_graph import neighbour_graph
from serving.model import ModelConfig, NextActionModel
from serving.model_selection import FitData, add_networks, choose_prior_weight, distil
from serving.next_event_evaluation import compare_next_event, next_event_cases
from serving.provenance import data_summary
from serving.train_config import TrainConfig
from serving.training_run import TrainingRun, model_scorer
from serving.warm_start import warm_start

__all__ = ["TrainConfig", "TrainingDataError", "compare", "repeat_share", "train"]


class TrainingDataError(ValueError):
    """The data cannot train a model (too few users with enough events)."""


def repeat_share(sequences: Sequence[UserSequence], window: int) -> float:
    """Share of next items that repeat an item of the window before them."""
    repeats = total = 0
    for seq in sequences:
        for t in range(1, len(seq)):
            total += 1
            repeats += seq.items[t] in seq.items[max(0, t - window) : t]
    return repeats / max(total, 1)


def compare(
    model: NextActionModel, split: Split, catalogue: Catalogue, history: History = "excluded"
) -> dict[str, dict[str, Any]]:
    """Validation and test metrics of the model and of both baselines, by scorer name."""
    scorers: dict[str, ScoreFn] = {
        "model": model_scorer(model, catalogue.vocab),
        "popularity": PopularityScorer(catalogue),
        "transition": TransitionScorer(catalogue, split.train),
    }
    return {
        name: {
            part: evaluate(score, cases, catalogue, history=history).to_dict()
            for part, cases in (("validation", split.validation), ("test", split.test))
        }
        for name, score in scorers.items()
    }


def train(
    sequences: Sequence[UserSequence],
    out_dir: Path,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: bool = True,
    initial: Checkpoint | None = None,
) -> Checkpoint:
    """Train on the leave-one-out training parts with early stopping on validation NDCG@10;
    save and return the best model, with its and the baselines' validation and test metrics.

    ``model_config.n_items`` is ignored: the vocabulary of the training parts sets it.
    ``initial``: a checkpoint of the same architecture whose weights each network starts from
    (:mod:`serving.warm_start`); items it does not know start fresh.
    """
    config = train_config or TrainConfig()
    if config.epochs < 1:
        raise ValueError("epochs must be at least 1")
    for name in ("graph_share", "distillation"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, not {getattr(config, name)}")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    started = time.monotonic()

    split = leave_one_out(sequences)
    catalogue = Catalogue.of(split.train)
    model_config = model_config or ModelConfig()
    repeats = repeat_share(split.train, model_config.window)
    exclude_seen = (
        config.exclude_seen if config.exclude_seen is not None else repeats < config.repeat_threshold
    )
    architecture = replace(model_config, n_items=len(catalogue.vocab), exclude_seen=exclude_seen)
    samples = training_samples(split.train, catalogue.vocab, architecture.window)
    # A sample keeps per-epoch validation cheap; the final metrics use every user.
    validation = split.validation.sample(config.max_validation_users, config.seed)
    if len(samples) == 0 or len(validation) == 0:
        raise TrainingDataError("need users with at least three events to train and validate")

    # The budget is shared by the networks the model may average (TrainConfig.max_networks),
    # and the first network's share by its teacher and itself (TrainConfig.distillation).
    network_budget_s = None if config.time_budget_s is None else config.time_budget_s / config.max_networks
    run_budget_s = network_budget_s / 2 if network_budget_s and config.distillation else network_budget_s
    network = NextActionModel(architecture)
    warm_items = warm_start(network, initial, catalogue.vocab) if initial is not None else None
    graph = neighbour_graph(catalogue, split.train, config.graph_neighbours) if config.graph_share else None
    data = FitData(samples, validation, generator, progress)
    first = TrainingRun(network, catalogue, config, run_budget_s, graph)
    data.fit(first, "teacher" if config.distillation else "network 1")
    teacher_history = first.history
    distillation_race = None
    if config.distillation:
        first, distillation_race = distil(first, data, config, run_budget_s)
    best, history = first.best, first.history
    model, network_race, member_histories = add_networks(first, data, config, network_budget_s)
    model.set_popularity(torch.from_numpy(catalogue.counts))
    prior_race = choose_prior_weight(model, split.train, validation, catalogue, config.prior_weights)
    train_seconds = time.monotonic() - started

    metrics = {
        "best_epoch": best.epoch,
        "hr@10": best.hr10,
        "ndcg@10": best.ndcg10,
        "epochs_run": len(history),
        "train_seconds": round(train_seconds, 2),
        "users": len(sequences),
        "train_samples": len(samples),
        "validation_users": len(validation),
        "items": catalogue.size,
        "repeat_share": repeats,
        "exclude_seen": exclude_seen,
        "dropout": model.config.dropout,
        "networks": model.config.networks,
        "network_race": network_race,  # validation NDCG@10 by number of networks tried
        "distillation_race": distillation_race,  # validation NDCG@10 of teacher and student
        "teacher_history": [asdict(r) for r in teacher_history] if config.distillation else None,
        "prior_weight": float(model.prior_weight),
        "prior_race": prior_race,  # validation NDCG@10 by transition prior weight
        "results": compare(model, split, catalogue),
        # Action type and time of the next event, for the model and its baselines.
        "next_event": {
            part: compare_next_event(model, catalogue.vocab, split.train, next_event_cases(sequences, part))
            for part in ("validation", "test")
        },
        "history": [asdict(r) for r in history],
        "member_histories": member_histories,  # the networks trained after the first
        "data": data_summary(sequences),
        "warm_started_items": warm_items,  # rows carried over
    }
    checkpoint = Checkpoint(model, catalogue.vocab, metrics)
    save_checkpoint(checkpoint, out_dir, asdict(config))
    return checkpoint
