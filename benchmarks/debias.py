"""Popularity-bias correction measured: post-hoc logit adjustment at serving and the
logit-adjusted training loss, on the full test set and on popularity-debiased views.

Serving (a): scores - tau * log(training popularity share), the causal "deconfounded"
ranking of PDA (Zhang et al., SIGIR 2021) with popularity's effect removed at inference and
the post-hoc logit adjustment of Menon et al. (ICLR 2021). :mod:`benchmarks.exploration`
computes its lists in the same scoring pass as the re-ranking candidates.
Training (b): ``TrainConfig.logit_adjustment``; this module's command trains a model with and
without it on the same budget and reports both on the same test cases.

Usage:
    python -m benchmarks.debias OUT_DIR movielens:PATH/u.data [--epochs 30] [--tau 1.0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.model_quality import DataSpec
from serving.checkpoint import Checkpoint
from serving.datasets import load_dataset
from serving.evaluation import LIST_LENGTH, Cases, Catalogue, exclude_inputs, leave_one_out
from serving.figure import saved_figure
from serving.list_metrics import list_ranks, list_report, ndcg_change, unit_rows
from serving.model import log_popularity
from serving.train import TrainConfig, train
from serving.training_run import model_scorer

__all__ = [
    "TAUS",
    "TAU_COLUMNS",
    "CaseScores",
    "item_embeddings",
    "markdown_table",
    "plot_taus",
    "score_tests",
    "tau_rows",
    "top_lists",
    "train_comparison",
]

TAUS = (0.0, 0.1, 0.25, 0.5, 1.0)  # the first is the reference the others' changes are against
SCORING_BATCH = 256  # test cases per model call, as evaluation batches them
TAU_COLUMNS = (
    "ndcg@10",
    "hr@10",
    "ndcg@10_tail_targets",
    "hr@10_tail_targets",
    "ndcg@10_ips",
    "hr@10_ips",
    "coverage@10",
    "long_tail@10",
    "novelty@10",
    "ild@10",
)


def top_lists(scores: np.ndarray, k: int) -> np.ndarray:
    """int64 [B, k]: each row's k best columns, best first."""
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def item_embeddings(checkpoint: Checkpoint) -> np.ndarray:
    """float [V, D * networks], unit rows: the networks' item embeddings side by side, the
    space the model's averaged scores are dot products in."""
    return unit_rows(checkpoint.model.joined_item_table().detach().numpy())


@dataclass(frozen=True)
class CaseScores:
    """The model's view of each test case, from one scoring pass (the expensive part)."""

    targets: np.ndarray  # int64 [N] vocabulary indices
    # By the tau the graph adjusted the scores with before serving them (as the stream asks):
    candidates: dict[float, np.ndarray]  # int64 [N, K]: the best K items, the user's own excluded
    probabilities: dict[float, np.ndarray]  # float32 [N, K]: their softmax probabilities
    adjusted: dict[float, np.ndarray]  # tau -> int64 [N, LIST_LENGTH]: top lists of the adjusted scores


def score_tests(
    checkpoint: Checkpoint,
    cases: Cases,
    catalogue: Catalogue,
    k: int,
    taus: Sequence[float],
    served_taus: Sequence[float] = (0.0,),
) -> CaseScores:
    """One scoring pass: top lists for each of ``taus``, and K served candidates with their
    probabilities for each of ``served_taus``."""
    score = model_scorer(checkpoint.model, catalogue.vocab)
    log_share = log_popularity(torch.from_numpy(catalogue.counts)).numpy().astype(np.float64)
    candidates: dict[float, list[np.ndarray]] = {tau: [] for tau in served_taus}
    probabilities: dict[float, list[np.ndarray]] = {tau: [] for tau in served_taus}
    adjusted: dict[float, list[np.ndarray]] = {tau: [] for tau in taus}
    for start in tqdm(range(0, len(cases), SCORING_BATCH), desc="score", unit="batch", leave=False):
        inputs = cases.inputs[start : start + SCORING_BATCH]
        scores = exclude_inputs(score(inputs), inputs, catalogue.vocab)
        for tau in served_taus:
            served = scores - tau * log_share
            top = top_lists(served, k)
            log_normaliser = np.logaddexp.reduce(served, axis=1, keepdims=True)
            candidates[tau].append(top)
            probabilities[tau].append(np.exp(np.take_along_axis(served, top, axis=1) - log_normaliser))
        for tau, lists in adjusted.items():
            lists.append(top_lists(scores - tau * log_share, LIST_LENGTH))
    return CaseScores(
        targets=catalogue.vocab.indices(cases.targets),
        candidates={tau: np.concatenate(parts) for tau, parts in candidates.items()},
        probabilities={tau: np.concatenate(parts).astype(np.float32) for tau, parts in probabilities.items()},
        adjusted={tau: np.concatenate(lists) for tau, lists in adjusted.items()},
    )


def tau_rows(scores: CaseScores, catalogue: Catalogue, embeddings: np.ndarray) -> list[dict[str, float]]:
    """Each tau's list metrics, with its NDCG@10 change against the first tau's."""
    ranks = {tau: list_ranks(lists, scores.targets) for tau, lists in scores.adjusted.items()}
    base = next(iter(ranks.values()))
    rows = []
    for tau, lists in scores.adjusted.items():
        change, error = ndcg_change(ranks[tau], base)
        report = list_report(lists, scores.targets, catalogue, embeddings)
        rows.append({"tau": tau, **report, "ndcg@10_change": change, "ndcg@10_change_se": error})
    return rows


def train_comparison(
    spec: DataSpec, epochs: int, tau: float, out_dir: Path
) -> dict[str, dict[str, float | int]]:
    """Train with the plain and with the logit-adjusted loss, same fixed epochs on one thread
    (the machine is shared, so epochs rather than seconds make the budgets equal), and report
    both on the test cases."""
    sequences = load_dataset(spec.path, spec.data_format).sequences
    split = leave_one_out(sequences)  # the split train() makes
    catalogue = Catalogue.of(split.train)
    results = {}
    for adjustment in (0.0, tau):
        config = TrainConfig(epochs=epochs, max_networks=1, threads=1, logit_adjustment=adjustment)
        with tempfile.TemporaryDirectory() as checkpoint_dir:
            checkpoint = train(sequences, Path(checkpoint_dir), train_config=config)
        scores = score_tests(checkpoint, split.test, catalogue, LIST_LENGTH, (0.0,))
        (report,) = tau_rows(scores, catalogue, item_embeddings(checkpoint))
        results[f"logit_adjustment={adjustment}"] = {
            **report,
            "epochs_run": checkpoint.metrics["epochs_run"],
            "best_epoch": checkpoint.metrics["best_epoch"],
            "train_seconds": checkpoint.metrics["train_seconds"],
        }
    (out_dir / "debias_training.json").write_text(json.dumps(results, indent=2) + "\n")
    table = [{"loss": name, **row} for name, row in results.items()]
    columns = ("loss", "epochs_run", "best_epoch", "train_seconds", *TAU_COLUMNS)
    (out_dir / "debias_training.md").write_text(markdown_table(table, columns) + "\n")
    return results


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_taus(rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Per data set, accuracy views and the long-tail share against tau."""
    views = (("ndcg@10", "full test"), ("ndcg@10_tail_targets", "tail targets"), ("ndcg@10_ips", "IPS"))
    with saved_figure(path, 1, len(rows), (5 * len(rows), 4)) as (_, axes):
        for axis, (name, table) in zip(axes[0], rows.items(), strict=True):
            taus = [row["tau"] for row in table]
            for column, label in views:
                axis.plot(taus, [row[column] for row in table], "o-", label=f"NDCG@10 {label}")
            twin = axis.twinx()
            twin.plot(taus, [row["long_tail@10"] for row in table], "k--", label="long-tail share")
            twin.set_ylabel("long-tail share of top-10")
            axis.set(title=name, xlabel="tau (scores - tau * log popularity)", ylabel="NDCG@10")
            axis.legend(loc="upper left", fontsize=8)
            twin.legend(loc="upper right", fontsize=8)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("data", type=DataSpec.parse, help="FORMAT:PATH")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--tau", type=float, default=1.0)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    results = train_comparison(args.data, args.epochs, args.tau, args.out_dir)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
