"""Train the next-item model on user sequences and save a checkpoint directory.

Checkpoint layout: ``weights.pt`` (state dict), ``hparams.json`` (model and training
hyperparameters), ``vocab.json``, ``metrics.json`` (best sampled validation HR/NDCG@10 and
per-epoch history; under ``results`` the validation and test metrics of the model and of the
popularity and transition baselines) and ``training_curve.png``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from serving.baselines import PopularityScorer, TransitionScorer, top_successors
from serving.data import TrainingSamples, UserSequence, encode_window, training_samples
from serving.evaluation import Cases, Catalogue, ScoreFn, Split, evaluate, leave_one_out
from serving.model import ModelConfig, NextActionModel
from serving.triton_backend import PAD_INDEX, UNKNOWN_INDEX
from serving.vocab import ItemVocab

__all__ = ["Checkpoint", "TrainConfig", "load_checkpoint", "model_scorer", "train"]

WEIGHTS, HPARAMS, VOCAB, METRICS, CURVE = (
    "weights.pt",
    "hparams.json",
    "vocab.json",
    "metrics.json",
    "training_curve.png",
)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 256  # samples, each one window and its target
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    # Share of input items hidden as "unknown" (action and time stay), so the model copes with
    # items it has never seen. Hiding more regularises more but pushes the model towards
    # popular items: Beauty, 12 minutes, 5% / 20% / 35% / 50% gave test NDCG@10 0.0596 / 0.0607
    # / 0.0612 / 0.0613 and long-tail share@10 0.386 / 0.343 / 0.322 / 0.312; in the
    # 45-minute benchmark 35% gave NDCG@10 0.0602 -> 0.0610 (under one standard error) but
    # long tail 0.412 -> 0.337: not worth it for a recommender that should reach past the head.
    unknown_rate: float = 0.05
    # Exclude the window's own items from the loss and from serving. None: decide from the
    # data, on when under ``repeat_threshold`` of next items repeat one in the window.
    exclude_seen: bool | None = None
    repeat_threshold: float = 0.01
    # Dropout choices raced on validation NDCG@10 for ``race_share`` of the time budget (or of
    # the epochs), or until each has converged; the best one goes on alone. Empty: the model
    # config's dropout. The race is long on purpose: less dropout learns faster but settles
    # lower on sparse data (Beauty, best validation NDCG@10 when the race ended: 0.068 with
    # 0.2 against 0.072 with 0.5).
    dropout_choices: tuple[float, ...] = (0.2, 0.5)
    race_share: float = 0.6
    # Weights of the transition prior tried on validation data once the network is trained
    # (0: the network alone).
    prior_weights: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    # Networks trained one after another while the time budget lasts, whose scores are averaged.
    # Each one adds a network's inference cost, so it must raise validation NDCG@10 by
    # ``network_min_gain`` to be kept. Beauty, 16 minutes each: test NDCG@10 0.0596 and 0.0601
    # alone, 0.0614 for their mean; HR@10 0.0973 and 0.0970, 0.1003.
    max_networks: int = 2
    network_min_gain: float = 0.01
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    plateau_epochs: int = 3  # epochs without a better one before the learning rate is halved
    time_budget_s: float | None = None  # stop after the epoch that crosses it
    max_validation_users: int = 5000  # validated during training; the final metrics use all
    threads: int = 2
    seed: int = 0


@dataclass(frozen=True)
class Checkpoint:
    model: NextActionModel
    vocab: ItemVocab
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    hr10: float
    ndcg10: float
    seconds: float


def repeat_share(sequences: Sequence[UserSequence], window: int) -> float:
    """Share of next items that repeat an item of the window before them."""
    repeats = total = 0
    for seq in sequences:
        for t in range(1, len(seq)):
            total += 1
            repeats += seq.items[t] in seq.items[max(0, t - window) : t]
    return repeats / max(total, 1)


def _hide_items(items: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a random share of real input items by the unknown index."""
    hide = (torch.rand(items.shape, generator=generator) < rate) & (items != PAD_INDEX)
    return items.masked_fill(hide, UNKNOWN_INDEX)


def _batches(samples: TrainingSamples, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
    """Sample indices of each batch: windows of about the same length together, so a batch is
    cut to its longest (little padding to compute), batches in random order."""
    jitter = torch.rand(len(samples), generator=generator) * 2  # shuffles near lengths
    chunks = torch.split(torch.argsort(torch.from_numpy(samples.lengths).float() + jitter), batch_size)
    return [chunks[i].numpy() for i in torch.randperm(len(chunks), generator=generator).tolist()]


def model_scorer(model: NextActionModel, vocab: ItemVocab) -> ScoreFn:
    """The model as an evaluation scoring callback: each input's newest window -> logits [B, V]."""
    window = model.config.window

    @torch.no_grad()
    def score(inputs: Sequence[UserSequence]) -> np.ndarray:
        model.eval()
        encoded = [
            encode_window(
                vocab.indices(seq.items),
                np.asarray(seq.actions, dtype=np.int64),
                np.asarray(seq.timestamps_ms, dtype=np.int64),
                window,
            )
            for seq in inputs
        ]
        # Only the columns the longest input fills: positions count from the newest event.
        width = min(window, max(len(seq) for seq in inputs))
        items, actions, gaps = (
            torch.from_numpy(np.stack(column)[:, -width:]) for column in zip(*encoded, strict=True)
        )
        return model.predict(items, actions, gaps).numpy()

    return score


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


def _train_epoch(
    model: NextActionModel,
    samples: TrainingSamples,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    generator: torch.Generator,
) -> float:
    model.train()
    total = 0.0
    for batch in _batches(samples, config.batch_size, generator):
        items, actions, gaps, targets = (torch.from_numpy(x) for x in samples.windows(batch))
        hidden = model.newest_hidden(_hide_items(items, config.unknown_rate, generator), actions, gaps)
        # Full softmax over all items; the window's items are out as in serving, but for
        # the target itself where it repeats one of them.
        seen = items.masked_fill(items == targets.unsqueeze(1), PAD_INDEX)
        loss = F.cross_entropy(model.exclude(model.item_logits(hidden), seen), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / max(len(samples), 1)


class _Run:
    """One model in training: its optimizer, validation history and best state so far."""

    def __init__(self, model: NextActionModel, catalogue: Catalogue, config: TrainConfig) -> None:
        self.model = model
        self.config = config
        self.catalogue = catalogue
        self.score = model_scorer(model, catalogue.vocab)
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        # Halving the step size once validation stalls lets the model settle into its optimum.
        self.schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=0.5, patience=config.plateau_epochs
        )
        self.history: list[EpochRecord] = []
        self.best = EpochRecord(0, float("inf"), 0.0, -1.0, 0.0)
        self._best_state = copy.deepcopy(model.state_dict())

    def step(
        self, samples: TrainingSamples, validation: Cases, generator: torch.Generator, seconds: float
    ) -> None:
        """One epoch, then validation; remembers the best state."""
        loss = _train_epoch(self.model, samples, self.optimizer, self.config, generator)
        result = evaluate(self.score, validation, self.catalogue)
        record = EpochRecord(len(self.history) + 1, loss, result.hit_rate[10], result.ndcg[10], seconds)
        self.history.append(record)
        self.schedule.step(record.ndcg10)
        if record.ndcg10 > self.best.ndcg10:
            self.best, self._best_state = record, copy.deepcopy(self.model.state_dict())

    def converged(self, patience: int) -> bool:
        """No better validation NDCG@10 for ``patience`` epochs."""
        return len(self.history) - self.best.epoch >= patience

    def finish(self) -> NextActionModel:
        self.model.load_state_dict(self._best_state)
        return self.model.eval()


def _choose_prior_weight(
    model: NextActionModel,
    train: Sequence[UserSequence],
    validation: Cases,
    catalogue: Catalogue,
    weights: Sequence[float],
) -> dict[str, float]:
    """Give the trained model the transition prior with the weight of the best validation
    NDCG@10 (ties: the smaller weight); returns NDCG@10 by weight."""
    successors, counts = (
        torch.from_numpy(x) for x in top_successors(catalogue, train, model.config.successors)
    )
    score = model_scorer(model, catalogue.vocab)
    race: dict[str, float] = {}
    for weight in sorted(weights or (0.0,)):
        model.set_transition_prior(successors, counts, weight)
        race[f"{weight:g}"] = evaluate(score, validation, catalogue).ndcg[10]
    best = max(race, key=lambda w: race[w])  # first (smallest) of equals
    model.set_transition_prior(successors, counts, float(best))
    return race


def _add_networks(
    first: _Run,
    samples: TrainingSamples,
    validation: Cases,
    generator: torch.Generator,
    config: TrainConfig,
    started: float,
    progress: bool,
) -> tuple[NextActionModel, dict[str, float], list[list[dict[str, float]]]]:
    """While time remains, train further networks like the first (new initial weights) and
    keep each one whose mean with those kept so far raises validation NDCG@10 by at least
    ``network_min_gain``. Returns the model, validation NDCG@10 by networks tried, and the
    histories of the networks trained here."""
    model, score = first.finish(), first.best.ndcg10
    race, histories = {"1": score}, list[list[dict[str, float]]]()
    for index in range(1, config.max_networks):
        if _budget_spent(config, time.monotonic() - started):
            break
        torch.manual_seed(config.seed + index)
        run = _Run(NextActionModel(replace(first.model.config, networks=1)), first.catalogue, config)
        bar = tqdm(range(config.epochs), desc=f"network {index + 1}", unit="epoch", disable=not progress)
        for _ in bar:
            run.step(samples, validation, generator, time.monotonic() - started)
            bar.set_postfix(ndcg10=f"{run.history[-1].ndcg10:.3f}", best=f"{run.best.ndcg10:.3f}")
            if run.converged(config.patience) or _budget_spent(config, time.monotonic() - started):
                break
        bar.close()
        histories.append([asdict(r) for r in run.history])
        candidate = NextActionModel.ensemble([model, run.finish()])
        candidate_score = evaluate(
            model_scorer(candidate, first.catalogue.vocab), validation, first.catalogue
        ).ndcg[10]
        race[str(index + 1)] = candidate_score
        if candidate_score < score * (1 + config.network_min_gain):
            break
        model, score = candidate, candidate_score
    return model, race, histories


def _budget_spent(config: TrainConfig, elapsed_s: float) -> bool:
    return config.time_budget_s is not None and elapsed_s >= config.time_budget_s


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
) -> Checkpoint:
    """Train on the leave-one-out training parts with early stopping on validation NDCG@10;
    save and return the best model, with its and the baselines' validation and test metrics.

    ``model_config.n_items`` is ignored: the vocabulary of the training parts sets it.
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
        raise ValueError("need users with at least three events to train and validate")

    runs = [
        _Run(NextActionModel(replace(architecture, dropout=dropout)), catalogue, config)
        for dropout in config.dropout_choices or (architecture.dropout,)
    ]
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
        if _budget_spent(config, elapsed):
            break
    bar.close()
    winner = max(runs, key=lambda r: r.best.ndcg10)
    best, history = winner.best, winner.history
    model, network_race, member_histories = _add_networks(
        winner, samples, validation, generator, config, started, progress
    )
    prior_race = _choose_prior_weight(model, split.train, validation, catalogue, config.prior_weights)
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
        "history": [asdict(r) for r in history],
        "member_histories": member_histories,  # the networks trained after the first
    }
    checkpoint = Checkpoint(model, catalogue.vocab, metrics)
    save_checkpoint(checkpoint, out_dir, config)
    return checkpoint


def save_checkpoint(checkpoint: Checkpoint, out_dir: Path, train_config: TrainConfig) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint.model.state_dict(), out_dir / WEIGHTS)
    hparams = {"model": checkpoint.model.config.to_dict(), "training": asdict(train_config)}
    (out_dir / HPARAMS).write_text(json.dumps(hparams, indent=2) + "\n")
    checkpoint.vocab.save(out_dir / VOCAB)
    (out_dir / METRICS).write_text(json.dumps(checkpoint.metrics, indent=2) + "\n")
    metrics = checkpoint.metrics
    _plot_curve([metrics["history"], *metrics["member_histories"]], out_dir / CURVE)


def load_checkpoint(checkpoint_dir: Path) -> Checkpoint:
    hparams = json.loads((checkpoint_dir / HPARAMS).read_text())
    try:
        model = NextActionModel(ModelConfig(**hparams["model"]))
        model.load_state_dict(torch.load(checkpoint_dir / WEIGHTS, weights_only=True))
    except (TypeError, RuntimeError) as exc:  # unknown settings / weights of another shape
        raise ValueError(
            f"{checkpoint_dir} was trained by an older model version: retrain it with this "
            f"version's train command ({exc})"
        ) from exc
    model.eval()
    metrics = json.loads((checkpoint_dir / METRICS).read_text())
    return Checkpoint(model, ItemVocab.load(checkpoint_dir / VOCAB), metrics)


def _plot_curve(histories: list[list[dict[str, float]]], path: Path) -> None:
    """Loss and validation HR/NDCG@10 per epoch, one line style per network trained."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training machines
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for number, history in enumerate(histories, start=1):
        epochs = [h["epoch"] for h in history]
        suffix = f" (network {number})" if len(histories) > 1 else ""
        style = "-" if number == 1 else "--"
        left.plot(epochs, [h["loss"] for h in history], style, color="C0", label=f"loss{suffix}")
        right.plot(epochs, [h["hr10"] for h in history], style, color="C1", label=f"HR@10{suffix}")
        right.plot(epochs, [h["ndcg10"] for h in history], style, color="C2", label=f"NDCG@10{suffix}")
    left.set(title="training loss", xlabel="epoch")
    if len(histories) > 1:
        left.legend(fontsize="small")
    right.set(title="validation (leave-one-out)", xlabel="epoch", ylim=(0, 1))
    right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
