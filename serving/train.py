"""Train the next-item model on events and save a checkpoint directory.

Checkpoint layout: ``weights.pt`` (state dict), ``hparams.json`` (model and training
hyperparameters), ``vocab.json``, ``metrics.json`` (best validation metrics and per-epoch
history) and ``training_curve.png``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from serving.data import Windows, evaluation_windows, split_last, training_windows, user_sequences
from serving.model import ModelConfig, NextActionModel
from serving.triton_backend import PAD_INDEX, UNKNOWN_INDEX
from serving.vocab import ItemVocab

__all__ = ["Checkpoint", "TrainConfig", "evaluate", "load_checkpoint", "train"]

WEIGHTS, HPARAMS, VOCAB, METRICS, CURVE = (
    "weights.pt",
    "hparams.json",
    "vocab.json",
    "metrics.json",
    "training_curve.png",
)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    unknown_rate: float = 0.05  # share of input items hidden as "unknown" so the model copes
    patience: int = 5  # epochs without a better validation NDCG@10 before stopping
    time_budget_s: float | None = None  # stop after the epoch that crosses it
    max_validation_users: int = 2000
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


def _hide_items(items: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a random share of real input items by the unknown index."""
    hide = (torch.rand(items.shape, generator=generator) < rate) & (items != PAD_INDEX)
    return items.masked_fill(hide, UNKNOWN_INDEX)


def _tensors(windows: Windows) -> tuple[torch.Tensor, ...]:
    return tuple(
        torch.from_numpy(a) for a in (windows.items, windows.actions, windows.gap_buckets, windows.targets)
    )


@torch.no_grad()
def evaluate(
    model: NextActionModel, windows: Windows, k: int = 10, batch_size: int = 512
) -> tuple[float, float]:
    """HR@k and NDCG@k of the target at the last position of each window, over all items."""
    model.eval()
    hits, gains = [], []
    for start in range(0, len(windows), batch_size):
        items, actions, gaps, targets = _tensors(windows.subset(slice(start, start + batch_size)))
        logits = model.predict(items, actions, gaps)  # [N, V]
        target = targets[:, -1]
        target_logit = logits.gather(1, target.unsqueeze(1))  # [N, 1]
        rank = (logits > target_logit).sum(dim=1)  # 0 = best
        hit = (rank < k) & (target > UNKNOWN_INDEX)  # an unknown target can never be hit
        hits.append(hit.float())
        gains.append(hit.float() / torch.log2(rank.float() + 2.0))
    return torch.cat(hits).mean().item(), torch.cat(gains).mean().item()


def _train_epoch(
    model: NextActionModel,
    windows: Windows,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    generator: torch.Generator,
) -> float:
    model.train()
    items, actions, gaps, targets = _tensors(windows)
    # Unknown targets carry no signal (their score is masked); drop them like padding.
    targets = targets.masked_fill(targets == UNKNOWN_INDEX, PAD_INDEX)
    order = torch.randperm(len(windows), generator=generator)
    total, count = 0.0, 0
    for start in range(0, len(windows), config.batch_size):
        rows = order[start : start + config.batch_size]
        logits = model(_hide_items(items[rows], config.unknown_rate, generator), actions[rows], gaps[rows])
        # Full softmax over all items at every position: [B*W, V] against [B*W].
        loss = F.cross_entropy(logits.flatten(0, 1), targets[rows].flatten(), ignore_index=PAD_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(rows)
        count += len(rows)
    return total / max(count, 1)


def train(
    events: Iterable[Mapping[str, Any]],
    out_dir: Path,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: bool = True,
) -> Checkpoint:
    """Train with leave-last-out validation and early stopping; save and return the best model.

    ``model_config.n_items`` is ignored: the vocabulary of the training events sets it.
    """
    config = train_config or TrainConfig()
    if config.epochs < 1:
        raise ValueError("epochs must be at least 1")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    started = time.monotonic()

    sequences = user_sequences(events)
    history_part, last_items = split_last(sequences)
    vocab = ItemVocab.build(item for seq in history_part for item in seq.items)
    architecture = replace(model_config or ModelConfig(), n_items=len(vocab))
    train_windows = training_windows(history_part, vocab, architecture.window)
    picked = np.random.default_rng(config.seed).permutation(len(history_part))[: config.max_validation_users]
    validation = evaluation_windows(
        [history_part[i] for i in picked], [last_items[i] for i in picked], vocab, architecture.window
    )
    if len(train_windows) == 0 or len(validation) == 0:
        raise ValueError("need users with at least two events to train and validate")

    model = NextActionModel(architecture)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    history: list[EpochRecord] = []
    best: EpochRecord | None = None
    best_state = copy.deepcopy(model.state_dict())
    bar = tqdm(range(1, config.epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        loss = _train_epoch(model, train_windows, optimizer, config, generator)
        hr10, ndcg10 = evaluate(model, validation)
        record = EpochRecord(epoch, loss, hr10, ndcg10, time.monotonic() - started)
        history.append(record)
        if best is None or record.ndcg10 > best.ndcg10:
            best, best_state = record, copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{loss:.3f}", hr10=f"{hr10:.3f}", ndcg10=f"{ndcg10:.3f}")
        if epoch - best.epoch >= config.patience:
            break
        if config.time_budget_s is not None and record.seconds >= config.time_budget_s:
            break
    bar.close()
    assert best is not None  # epochs >= 1, so the loop ran
    model.load_state_dict(best_state)
    model.eval()

    metrics = {
        "best_epoch": best.epoch,
        "hr@10": best.hr10,
        "ndcg@10": best.ndcg10,
        "epochs_run": len(history),
        "train_seconds": round(time.monotonic() - started, 2),
        "users": len(sequences),
        "train_windows": len(train_windows),
        "validation_users": len(validation),
        "items": len(vocab.items),
        "history": [asdict(r) for r in history],
    }
    checkpoint = Checkpoint(model, vocab, metrics)
    save_checkpoint(checkpoint, out_dir, config)
    return checkpoint


def save_checkpoint(checkpoint: Checkpoint, out_dir: Path, train_config: TrainConfig) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint.model.state_dict(), out_dir / WEIGHTS)
    hparams = {"model": checkpoint.model.config.to_dict(), "training": asdict(train_config)}
    (out_dir / HPARAMS).write_text(json.dumps(hparams, indent=2) + "\n")
    checkpoint.vocab.save(out_dir / VOCAB)
    (out_dir / METRICS).write_text(json.dumps(checkpoint.metrics, indent=2) + "\n")
    _plot_curve(checkpoint.metrics["history"], out_dir / CURVE)


def load_checkpoint(checkpoint_dir: Path) -> Checkpoint:
    hparams = json.loads((checkpoint_dir / HPARAMS).read_text())
    model = NextActionModel(ModelConfig(**hparams["model"]))
    model.load_state_dict(torch.load(checkpoint_dir / WEIGHTS, weights_only=True))
    model.eval()
    metrics = json.loads((checkpoint_dir / METRICS).read_text())
    return Checkpoint(model, ItemVocab.load(checkpoint_dir / VOCAB), metrics)


def _plot_curve(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training machines
    from matplotlib import pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["loss"] for h in history])
    left.set(title="training loss", xlabel="epoch")
    right.plot(epochs, [h["hr10"] for h in history], label="HR@10")
    right.plot(epochs, [h["ndcg10"] for h in history], label="NDCG@10")
    right.set(title="validation (leave-last-out)", xlabel="epoch", ylim=(0, 1))
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
