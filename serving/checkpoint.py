"""A trained model on disk: weights, hyperparameters, vocabulary, metrics and the training curve.

Layout: ``weights.pt`` (state dict), ``hparams.json`` (model and training hyperparameters),
``vocab.json``, ``metrics.json`` (best sampled validation HR/NDCG@10 and per-epoch history;
under ``results`` the validation and test metrics of the model and of the popularity and
transition baselines) and ``training_curve.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from serving.model import ModelConfig, NextActionModel
from serving.training_curve import plot_training_curve
from serving.vocab import ItemVocab

__all__ = [
    "CURVE",
    "HPARAMS",
    "METRICS",
    "VOCAB",
    "WEIGHTS",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]

WEIGHTS, HPARAMS, VOCAB, METRICS, CURVE = (
    "weights.pt",
    "hparams.json",
    "vocab.json",
    "metrics.json",
    "training_curve.png",
)


class CheckpointError(ValueError):
    """A checkpoint this version cannot load; the message says what to do."""


@dataclass(frozen=True)
class Checkpoint:
    model: NextActionModel
    vocab: ItemVocab
    metrics: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(checkpoint: Checkpoint, out_dir: Path, training: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint.model.state_dict(), out_dir / WEIGHTS)
    hparams = {"model": checkpoint.model.config.to_dict(), "training": training}
    (out_dir / HPARAMS).write_text(json.dumps(hparams, indent=2) + "\n")
    checkpoint.vocab.save(out_dir / VOCAB)
    (out_dir / METRICS).write_text(json.dumps(checkpoint.metrics, indent=2) + "\n")
    metrics = checkpoint.metrics
    plot_training_curve([metrics["history"], *metrics["member_histories"]], out_dir / CURVE)


def load_checkpoint(checkpoint_dir: Path) -> Checkpoint:
    hparams = json.loads((checkpoint_dir / HPARAMS).read_text())
    try:
        model = NextActionModel(ModelConfig(**hparams["model"]))
        missing, unexpected = model.load_state_dict(
            torch.load(checkpoint_dir / WEIGHTS, weights_only=True), strict=False
        )
        # Checkpoints from before the popularity correction lack only its table: they load with
        # uniform popularity, which makes the correction a no-op.
        if unexpected or set(missing) - {"log_popularity"}:
            raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
    except (TypeError, RuntimeError) as exc:  # unknown settings / weights of another shape
        raise CheckpointError(
            f"{checkpoint_dir} was trained by an older model version: retrain it with this "
            f"version's train command ({exc})"
        ) from exc
    model.eval()
    metrics = json.loads((checkpoint_dir / METRICS).read_text())
    return Checkpoint(model, ItemVocab.load(checkpoint_dir / VOCAB), metrics)
