"""Beyond accuracy, in one run on public data: faithful explanations, interest exploration,
the popularity correction and cold-start items, with the tables and plots of each.

Per data set a checkpoint is trained (``--time-budget`` minutes) unless ``--checkpoints``
already holds one, then measured: deletion tests of the served explanations
(:mod:`benchmarks.faithfulness`), the re-ranking and popularity-correction curves
(:mod:`benchmarks.exploration`), and, on MovieLens, items held out of training and added
from their titles (:mod:`benchmarks.cold_start`). Writes ``beyond.json``, ``beyond.md`` and
the plots to ``--out``.

Usage:
    nextaction beyond movielens:PATH/u.data user-lines:PATH/Beauty.txt --out DIR \\
        [--checkpoints DIR] [--time-budget MINUTES] [--cases N]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import cold_start, exploration
from benchmarks.debias import plot_taus, tau_rows
from benchmarks.faithfulness import faithfulness_report, faithfulness_tables
from benchmarks.model_quality import DataSpec
from serving.checkpoint import HPARAMS
from serving.datasets import load_dataset
from serving.evaluation import leave_one_out
from serving.train import TrainConfig, train

__all__ = ["run"]

# Training minutes of the cold-start model (trained without the held-out items).
_COLD_START_MINUTES = 10.0
_COLD_SHARE = 0.1


def _checkpoint(spec: DataSpec, directory: Path, time_budget_min: float) -> Path:
    if (directory / HPARAMS).is_file():
        print(f"[beyond] reusing the checkpoint in {directory}", flush=True)
        return directory
    print(f"[beyond] training on {spec.path} for {time_budget_min:.0f} minutes", flush=True)
    sequences = load_dataset(spec.path, spec.data_format).sequences
    train(sequences, directory, train_config=TrainConfig(time_budget_s=time_budget_min * 60))
    return directory


def _name(spec: DataSpec) -> str:
    return f"{spec.path.parent.name}/{spec.path.name}"  # u.data alone says little


def run(
    specs: list[DataSpec], *, out: Path, checkpoints: Path, time_budget_min: float, cases: int | None
) -> dict[str, Any]:
    """Every table for every data set; the report is written after each part, so a long run
    keeps what it finished."""
    out.mkdir(parents=True, exist_ok=True)
    checkpoints.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"data": {}}
    started = time.monotonic()

    def save() -> None:
        report["seconds"] = round(time.monotonic() - started, 1)
        (out / "beyond.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "beyond.md").write_text(markdown(report))

    for number, spec in enumerate(specs, start=1):
        name = _name(spec)
        print(f"[beyond] data set {number}/{len(specs)}: {name}", flush=True)
        checkpoint_dir = _checkpoint(spec, checkpoints / f"{number}-{spec.path.stem}", time_budget_min)
        dataset = load_dataset(spec.path, spec.data_format)
        test = leave_one_out(dataset.sequences).test
        part: dict[str, Any] = report["data"].setdefault(name, {})
        part["faithfulness"] = faithfulness_report(
            checkpoint_dir, test.inputs, dataset.item_titles, max_cases=cases or 2000
        )
        save()
        torch.set_num_threads(1)
        scored = exploration.score_data(spec, checkpoint_dir, cases)
        part["exploration"] = exploration.grid_rows(scored)
        part["popularity_correction"] = tau_rows(scored.cases, scored.catalogue, scored.embeddings)
        exploration.plot_curves(
            name, {"grid": part["exploration"]}, out / f"curves-{name.replace('/', '-')}.png"
        )
        save()
    grids = {name: part["exploration"] for name, part in report["data"].items()}
    report["exploration_default"] = exploration.choose_default(grids)
    plot_taus(
        {name: part["popularity_correction"] for name, part in report["data"].items()}, out / "taus.png"
    )
    save()
    movielens = [spec for spec in specs if spec.data_format == "movielens"]
    if movielens:
        print("[beyond] cold start: newest items held out of training, added from their titles", flush=True)
        report["cold_start"] = cold_start.run(
            movielens[0].path, checkpoints / "cold-start", _COLD_START_MINUTES * 60, _COLD_SHARE
        )
        save()
    print(markdown(report))
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Beyond accuracy", ""]
    for name, part in report["data"].items():
        lines += [f"## {name}", ""]
        if "faithfulness" in part:
            lines += ["### Faithful explanations", "", faithfulness_tables(name, part["faithfulness"]), ""]
        if "exploration" in part:
            lines += ["### Exploration and popularity correction", ""]
            lines += [exploration.markdown_rows(part["exploration"], part["popularity_correction"]), ""]
    if "exploration_default" in report:
        lines += ["## Chosen re-ranking default", "", f"`{report['exploration_default']}`", ""]
    if "cold_start" in report:
        lines += [cold_start.markdown(report["cold_start"])]
    return "\n".join(lines)
