"""Train the next-item model on user sequences and save a checkpoint directory.

Leave-one-out split, a dropout race on validation NDCG@10, early stopping, then the choices
of :mod:`serving.model_selection`; the saved checkpoint (:mod:`serving.checkpoint`) carries
the model's and the baselines' validation and test metrics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from serving.baselines import PopularityScorer, TransitionScorer
from serving.checkpoint import Checkpoint, save_checkpoint
from serving.data import UserSequence, training_samples
from serving.evaluation import Catalogue, ScoreFn, Split, evaluate, leave_one_out
from serving.model import ModelConfig, NextActionModel
from serving.model_selection import add_networks, choose_prior_weight
from serving.next_event_evaluation import compare_next_event, next_event_cases
from serving.provenance import data_summary
from serving.train_config import TrainConfig, budget_spent
from serving.training_run import TrainingRun, model_scorer
from serving.warm_start import warm_start

__all__ = ["TrainConfig", "TrainingDataError", "repeat_share", "train"]


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


def _compare(model: NextActionModel, split: Split, catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """Validation and test metrics of the model and of both baselines, by scorer name."""
    scorers: dict[str, ScoreFn] = {
        "model": model_scorer(model, catalogue.vocab),
        "popularity": PopularityScorer(catalogue),
        "transition": TransitionScorer(catalogue, split.train),
    }
    return {
        name: {
            "validation": evaluate(score, split.validation, catalogue).to_dict(),
            "test": evaluate(score, split.test, catalogue).to_dict(),
        }
        for name, score in scorers.items()
    }


def _race_over(epoch: int, elapsed_s: float, config: TrainConfig) -> bool:
    if config.time_budget_s is not None and elapsed_s >= config.race_share * config.time_budget_s:
        return True
    return epoch >= max(1, round(config.race_share * config.epochs))


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

    runs = [
        TrainingRun(NextActionModel(replace(architecture, dropout=dropout)), catalogue, config)
        for dropout in config.dropout_choices or (architecture.dropout,)
    ]
    warm_items = [warm_start(run.model, initial, catalogue.vocab) for run in runs if initial is not None]
    race: dict[str, float] = {}
    bar = tqdm(range(1, config.epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        for run in runs:
            if not run.converged(config.patience):
                run.step(samples, validation, generator, time.monotonic() - started)
        elapsed = time.monotonic() - started
        if len(runs) > 1 and (
            _race_over(epoch, elapsed, config) or all(r.converged(config.patience) for r in runs)
        ):
            # Every choice had the same epochs (or converged); the best validation NDCG@10 wins.
            race = {f"dropout={r.model.config.dropout}": r.best.ndcg10 for r in runs}
            runs = [max(runs, key=lambda r: r.best.ndcg10)]
        leader = max(runs, key=lambda r: r.best.ndcg10)
        latest = leader.history[-1]
        bar.set_postfix(loss=f"{latest.loss:.3f}", hr10=f"{latest.hr10:.3f}", ndcg10=f"{latest.ndcg10:.3f}")
        if len(runs) == 1 and leader.converged(config.patience):
            break
        if budget_spent(config, elapsed):
            break
    bar.close()
    winner = max(runs, key=lambda r: r.best.ndcg10)
    best, history = winner.best, winner.history
    model, network_race, member_histories = add_networks(
        winner, samples, validation, generator, config, started, progress
    )
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
        "dropout_race": race,  # best validation NDCG@10 of each choice when the race ended
        "prior_weight": float(model.prior_weight),
        "prior_race": prior_race,  # validation NDCG@10 by transition prior weight
        "results": _compare(model, split, catalogue),
        # Action type and time of the next event, for the model and its baselines.
        "next_event": {
            part: compare_next_event(model, catalogue.vocab, split.train, next_event_cases(sequences, part))
            for part in ("validation", "test")
        },
        "history": [asdict(r) for r in history],
        "member_histories": member_histories,  # the networks trained after the first
        "data": data_summary(sequences),
        "warm_started_items": warm_items[0] if warm_items else None,  # rows carried over
    }
    checkpoint = Checkpoint(model, catalogue.vocab, metrics)
    save_checkpoint(checkpoint, out_dir, asdict(config))
    return checkpoint
