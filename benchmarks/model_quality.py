"""Model quality benchmark: the model against the popularity and transition baselines and
published numbers, on public data sets, under the one leave-one-out protocol.

Usage:
    nextaction quality movielens:PATH/u.data user-lines:PATH/Beauty.txt \
        [--time-budget MINUTES] [--out results.json] [--checkpoints DIR]
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import GAP_QUANTILE_LEVELS, TIMESTAMPS, WINDOW_ACTIONS, left_pad
from serving.data import UserSequence
from serving.datasets import FORMATS, load_dataset
from serving.evaluation import leave_one_out
from serving.export import export
from serving.serving_module import EXPLAIN_POSITIONS
from serving.train import TrainConfig, train
from serving.triton_backend import NextActionPredictor

# Published full-ranking leave-one-out results (same protocol: all items ranked, last item
# tested), by data file stem.
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "beauty": {
        "BSARec (AAAI 2024)": {"hr@10": 0.1008, "ndcg@10": 0.0611},
        "ICLRec (WWW 2022)": {
            "hr@5": 0.0500,
            "ndcg@5": 0.0326,
            "hr@10": 0.0744,
            "ndcg@10": 0.0403,
            "hr@20": 0.1058,
            "ndcg@20": 0.0483,
        },
    },
}
COLUMNS = ("hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "coverage@10", "long_tail@10")
NEXT_EVENT_COLUMNS = (
    "action_log_loss",
    "purchase_auc",
    "log_gap_median_abs_error",
    *(f"gap_below_p{round(level * 100)}" for level in GAP_QUANTILE_LEVELS),
)


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


def run(spec: DataSpec, checkpoint_dir: Path, time_budget_min: float) -> dict[str, Any]:
    print(f"[benchmark] loading {spec.path} ({spec.data_format})", flush=True)
    sequences = load_dataset(spec.path, spec.data_format).sequences
    interactions = sum(len(s) for s in sequences)
    print(f"[benchmark] {len(sequences)} users, {interactions} interactions; training", flush=True)
    started = time.monotonic()
    checkpoint = train(
        sequences, checkpoint_dir, train_config=TrainConfig(time_budget_s=time_budget_min * 60)
    )
    metrics = checkpoint.metrics
    print("[benchmark] exporting and timing the served model", flush=True)
    cost = serving_cost(checkpoint_dir, leave_one_out(sequences).test.inputs[:32])
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
        "results": metrics["results"],
        "next_event": metrics["next_event"],
        "serving_cost": cost,
        "parameters": sum(p.numel() for p in checkpoint.model.parameters()),
        "published": PUBLISHED.get(spec.path.stem.lower(), {}),
    }


def table(name: str, report: dict[str, Any]) -> str:
    header = f"{'':<22}" + "".join(f"{c:>13}" for c in COLUMNS)
    rows = [
        f"{name}: {report['users']} users, {report['items']} items; model trained "
        f"{report['train_seconds']:.0f} s ({report['epochs_run']} epochs, best {report['best_epoch']}; "
        f"{report['networks']} network(s) averaged)",
        header,
    ]
    for method, result in report["results"].items():
        test = result["test"]
        rows.append(f"{method:<22}" + "".join(f"{test[c]:>13.4f}" for c in COLUMNS))
    for method, numbers in report["published"].items():
        rows.append(
            f"{method:<22}"
            + "".join(f"{numbers[c]:>13.4f}" if c in numbers else f"{'-':>13}" for c in COLUMNS)
        )
    rows.append(
        "next event (test): action log loss, purchase AUC, median |log(1 + s) error|, shares under quantiles"
    )
    for method, numbers in report["next_event"]["test"].items():
        rows.append(f"{method:<22}" + "".join(f"{numbers[c]:>13.4f}" for c in NEXT_EVENT_COLUMNS))
    cost = report["serving_cost"]
    rows.append(
        f"served with explanations, 1 CPU thread: batch 1 {cost['latency_ms_batch_1']:.1f} ms, "
        f"batch 32 {cost['latency_ms_batch_32']:.0f} ms ({cost['windows_per_s_batch_32']:.0f} windows/s); "
        f"{report['parameters']:,} parameters, ONNX {cost['onnx_megabytes']:.1f} MB"
    )
    return "\n".join(rows)


def run_all(
    specs: list[DataSpec], *, time_budget_min: float, out: Path | None, checkpoints: Path | None
) -> None:
    """Train and evaluate on each data set in turn; print the tables (and write JSON to ``out``
    after each data set, so a long run keeps what it finished)."""
    reports: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="model-quality-") as tmp:
        root = checkpoints or Path(tmp)
        for n, spec in enumerate(specs, start=1):
            name = f"{spec.path.parent.name}/{spec.path.name}"
            print(f"[benchmark] data set {n}/{len(specs)}: {name}", flush=True)
            reports[name] = run(spec, root / f"{n}-{spec.path.stem}", time_budget_min)
            if out:
                out.write_text(json.dumps(reports, indent=2) + "\n")
    print("\nTest metrics (leave-one-out, all items ranked, input items excluded):")
    for name, report in reports.items():
        print("\n" + table(name, report))
