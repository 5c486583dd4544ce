"""Model quality benchmark: the model against the popularity and transition baselines and
published numbers, on public data sets, under the one leave-one-out protocol; each data set
trained once per seed, the model's figures as mean and standard deviation over the seeds, under
both evaluator conventions (the user's items excluded, or scored 0 as in the published code).

Usage:
    nextaction quality movielens:PATH/u.data user-lines:PATH/Beauty.txt \
        [--time-budget MINUTES] [--seeds 0 1 2] [--max-networks N] [--out results.json] [--checkpoints DIR]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import GAP_QUANTILE_LEVELS, TIMESTAMPS, WINDOW_ACTIONS, left_pad
from serving.data import UserSequence
from serving.datasets import FORMATS, load_dataset
from serving.evaluation import Catalogue, leave_one_out
from serving.export import export
from serving.serving_module import EXPLAIN_POSITIONS
from serving.train import TrainConfig, compare, train
from serving.triton_backend import NextActionPredictor

# Published full-ranking leave-one-out results (same protocol: all items ranked, last item
# tested), by data file stem.
_ALL = ("hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20")
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "beauty": {
        "WEARec (AAAI 2026)": dict(zip(_ALL[2:], (0.1041, 0.0614, 0.1391, 0.0703), strict=True)),
        "TV-Rec (NeurIPS 2025)": dict(
            zip(_ALL, (0.0721, 0.0513, 0.1017, 0.0608, 0.1403, 0.0705), strict=True)
        ),
        "BSARec (AAAI 2024)": dict(zip(_ALL, (0.0736, 0.0523, 0.1008, 0.0611, 0.1373, 0.0703), strict=True)),
    },
}
COLUMNS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "coverage@10", "long_tail@10")
ACTION_COLUMNS = ("action_log_loss", "purchase_auc")
TIME_COLUMNS = (
    "log_gap_median_abs_error",
    *(f"gap_below_p{round(level * 100)}" for level in GAP_QUANTILE_LEVELS),
)
NEXT_EVENT_COLUMNS = (*ACTION_COLUMNS, *TIME_COLUMNS)
# Formats whose events carry real times (the others get evenly spaced ones).
TIMED_FORMATS = frozenset({"events", "movielens"})


def next_event_columns(sequences: list[UserSequence], data_format: str) -> list[str]:
    """The next-event measures the data can support: action types only where it has more than
    one, times only where they are real."""
    kinds = {action for seq in sequences for action in seq.actions}
    return [
        *(ACTION_COLUMNS if len(kinds) > 1 else ()),
        *(TIME_COLUMNS if data_format in TIMED_FORMATS else ()),
    ]


@dataclass(frozen=True)
class DataSpec:
    data_format: str
    path: Path

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        data_format, _, path = text.partition(":")
        if data_format not in FORMATS or not path:
            raise ValueError(f"{text!r}: expected FORMAT:PATH with FORMAT in {sorted(FORMATS)}")
        return cls(data_format, Path(path))


def serving_cost(
    checkpoint_dir: Path, inputs: list[UserSequence], explain_positions: int = EXPLAIN_POSITIONS
) -> dict[str, float]:
    """Export the checkpoint as the stream serves it (top-k + in-graph explanations of the
    newest ``explain_positions`` events) and time onnxruntime on one CPU thread, as a Triton
    instance runs it, at batch 1 and 32."""
    repository = checkpoint_dir / "repository"
    version_dir = export(checkpoint_dir, repository, explain_positions=explain_positions)
    predictor = NextActionPredictor(version_dir, threads=1)
    window = predictor.window
    seconds: dict[str, float] = {}
    for batch in (1, 32):
        rows = inputs[:batch]
        items = left_pad([seq.items for seq in rows], window, "", object)
        actions = left_pad([seq.actions for seq in rows], window, 0, WINDOW_ACTIONS.dtype)
        stamps = left_pad([seq.timestamps_ms for seq in rows], window, 0, TIMESTAMPS.dtype)
        predictor.predict(items, actions, stamps)  # warm-up
        runs = max(3, 60 // batch)
        started = time.perf_counter()
        for _ in range(runs):
            predictor.predict(items, actions, stamps)
        seconds[f"latency_ms_batch_{batch}"] = (time.perf_counter() - started) / runs * 1000
    return {
        **seconds,
        "windows_per_s_batch_32": 32_000 / seconds["latency_ms_batch_32"],
        "onnx_megabytes": (version_dir / "model.onnx").stat().st_size / 1e6,
    }


def run(
    spec: DataSpec, checkpoint_dir: Path, time_budget_min: float, seed: int, max_networks: int = 1
) -> dict[str, Any]:
    print(f"[benchmark] loading {spec.path} ({spec.data_format})", flush=True)
    sequences = load_dataset(spec.path, spec.data_format).sequences
    interactions = sum(len(s) for s in sequences)
    print(
        f"[benchmark] {len(sequences)} users, {interactions} interactions; training, seed {seed}", flush=True
    )
    started = time.monotonic()
    config = TrainConfig(time_budget_s=time_budget_min * 60, seed=seed, max_networks=max_networks)
    checkpoint = train(sequences, checkpoint_dir, train_config=config)
    metrics = checkpoint.metrics
    print("[benchmark] exporting and timing the served model", flush=True)
    split = leave_one_out(sequences)
    cost = serving_cost(checkpoint_dir, split.test.inputs[:32])
    return {
        "format": spec.data_format,
        "path": str(spec.path),
        "users": len(sequences),
        "interactions": interactions,
        "items": metrics["items"],
        "time_budget_min": time_budget_min,
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": round(time.monotonic() - started, 1),
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "networks": metrics["networks"],
        "network_race": metrics["network_race"],
        "distillation_race": metrics["distillation_race"],
        "seed": seed,
        "results": metrics["results"],
        # The convention of the published code: the user's items scored 0, not excluded.
        "results_history_zero": {
            method: parts["test"]
            for method, parts in compare(checkpoint.model, split, Catalogue.of(split.train), "zero").items()
        },
        "next_event": metrics["next_event"],
        "next_event_columns": next_event_columns(sequences, spec.data_format),
        "serving_cost": cost,
        "parameters": sum(p.numel() for p in checkpoint.model.parameters()),
        "published": PUBLISHED.get(spec.path.stem.lower(), {}),
    }


def summary(
    runs: list[dict[str, Any]], results: str = "results"
) -> dict[str, dict[str, tuple[float, float]]]:
    """Test metrics of each method over the seeds' runs: (mean, standard deviation; 0 for
    one run)."""
    summed: dict[str, dict[str, tuple[float, float]]] = {}
    for method in runs[0][results]:
        values = [run[results][method] for run in runs]
        if results == "results":
            values = [v["test"] for v in values]
        summed[method] = {
            column: (
                statistics.fmean(v[column] for v in values),
                statistics.stdev(v[column] for v in values) if len(values) > 1 else 0.0,
            )
            for column in COLUMNS
        }
    return summed


def table(name: str, runs: list[dict[str, Any]]) -> str:
    first = runs[0]
    seconds = [r["train_seconds"] for r in runs]
    epochs = [r["epochs_run"] for r in runs]
    header = f"{'':<34}" + "".join(f"{c:>17}" for c in COLUMNS)
    rows = [
        f"{name}: {first['users']} users, {first['items']} items; {len(runs)} seed(s) "
        f"{[r['seed'] for r in runs]}, each trained {min(seconds):.0f}-{max(seconds):.0f} s "
        f"({min(epochs)}-{max(epochs)} epochs; {first['networks']} network(s)); mean ± sd over seeds"
    ]
    for label, results in (
        ("user's items excluded", "results"),
        ("user's items scored 0", "results_history_zero"),
    ):
        rows += [f"test, {label}:", header]
        for method, columns in summary(runs, results).items():
            rows.append(
                f"{method:<34}" + "".join(f"{mean:.4f} ± {sd:.4f}".rjust(17) for mean, sd in columns.values())
            )
    for method, numbers in first["published"].items():
        rows.append(
            f"{method + ' (published)':<34}"
            + "".join(f"{numbers[c]:>17.4f}" if c in numbers else f"{'-':>17}" for c in COLUMNS)
        )
    measures = first["next_event_columns"]
    rows.append(
        f"next event (test, first seed): {', '.join(measures) or 'no action types or times to predict'}"
    )
    for method, numbers in first["next_event"]["test"].items() if measures else ():
        rows.append(f"{method:<34}" + "".join(f"{numbers[c]:>17.4f}" for c in measures))
    cost = first["serving_cost"]
    rows.append(
        f"served with explanations, 1 CPU thread: batch 1 {cost['latency_ms_batch_1']:.1f} ms, "
        f"batch 32 {cost['latency_ms_batch_32']:.0f} ms ({cost['windows_per_s_batch_32']:.0f} windows/s); "
        f"{first['parameters']:,} parameters, ONNX {cost['onnx_megabytes']:.1f} MB"
    )
    return "\n".join(rows)


def run_all(
    specs: list[DataSpec],
    *,
    time_budget_min: float,
    seeds: list[int],
    max_networks: int,
    out: Path | None,
    checkpoints: Path | None,
) -> None:
    """Train and evaluate on each data set once per seed; print the tables (and write JSON to
    ``out`` after each run, so a long benchmark keeps what it finished)."""
    reports: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="model-quality-") as tmp:
        root = checkpoints or Path(tmp)
        for n, spec in enumerate(specs, start=1):
            name = f"{spec.path.parent.name}/{spec.path.name}"
            for seed in seeds:
                print(f"[benchmark] data set {n}/{len(specs)}: {name}, seed {seed}", flush=True)
                run_dir = root / f"{n}-{spec.path.stem}-seed{seed}"
                reports.setdefault(name, []).append(run(spec, run_dir, time_budget_min, seed, max_networks))
                if out:
                    out.write_text(json.dumps(reports, indent=2) + "\n")
    print("\nTest metrics (leave-one-out, all items ranked):")
    for name, runs in reports.items():
        print("\n" + table(name, runs))
