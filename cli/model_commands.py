"""Handlers of the model's commands: generate, train, export, add-items. Training, export and
adding items import torch when they run; generating synthetic data does not."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from cli.main import EXIT_OK, InputFileError, require_file
from serving.synthetic import (
    SyntheticConfig,
    generate_events,
    item_catalogue,
    planted_pairs,
    write_events_jsonl,
)

__all__ = ["add_items", "export", "generate", "train"]


def generate(args: argparse.Namespace) -> int:
    config = SyntheticConfig(
        n_users=args.users,
        n_items=args.items,
        n_categories=args.categories,
        mean_events_per_user=args.events_per_user,
        seed=args.seed,
    )
    count = write_events_jsonl(generate_events(config), args.out)
    if args.pairs_out:
        args.pairs_out.write_text(json.dumps(planted_pairs(config), indent=2) + "\n")
    print(f"wrote {count} events for {config.n_users} users to {args.out}")
    if args.catalogue:
        items = write_events_jsonl(item_catalogue(config), args.catalogue)
        print(f"wrote the titles and texts of {items} items to {args.catalogue}")
    return EXIT_OK


def train(args: argparse.Namespace) -> int:
    from serving.datasets import load_dataset
    from serving.model import ModelConfig
    from serving.train import TrainConfig
    from serving.train import train as train_model

    budget_s = None if args.time_budget is None else args.time_budget * 60.0
    model = ModelConfig(window=args.window, hidden=args.hidden, layers=args.layers, heads=args.heads)
    training = TrainConfig(time_budget_s=budget_s, seed=args.seed, logit_adjustment=args.logit_adjustment)
    if args.max_networks is not None:
        training = replace(training, max_networks=args.max_networks)
    if args.epochs is not None:
        training = replace(training, epochs=args.epochs)
    if args.dropout is not None:
        model = replace(model, dropout=args.dropout)
    if args.graph_share is not None:
        training = replace(training, graph_share=args.graph_share)
    if args.distillation is not None:
        training = replace(training, distillation=args.distillation)
    sequences = load_dataset(require_file(args.data), args.format).sequences
    checkpoint = train_model(sequences, args.out, model, training, progress=not args.quiet)
    m = checkpoint.metrics
    print(
        f"best epoch {m['best_epoch']} ({m['train_seconds']:.0f} s), {m['networks']} network(s) "
        f"averaged; checkpoint in {args.out}"
    )
    if race := m["distillation_race"]:
        kept = "student" if race["student"] > race["teacher"] else "teacher"
        print(
            f"  {kept} kept: validation NDCG@10 student {race['student']:.4f}, teacher {race['teacher']:.4f}"
        )
    for name, result in m["results"].items():
        test = result["test"]
        print(f"  {name:<10} test HR@10 {test['hr@10']:.4f} NDCG@10 {test['ndcg@10']:.4f}")
    for name, test in m["next_event"]["test"].items():
        print(
            f"  {name:<11} next event: action log loss {test['action_log_loss']:.3f}, purchase AUC "
            f"{test['purchase_auc']:.3f}, median |log(1 + s) error| {test['log_gap_median_abs_error']:.2f}"
        )
    return EXIT_OK


def export(args: argparse.Namespace) -> int:
    if not (args.checkpoint / "hparams.json").is_file():
        raise InputFileError(f"{args.checkpoint} is not a checkpoint directory (no hparams.json)")
    # With --json, stdout carries the result alone; everything else goes to stderr.
    notes = sys.stderr if args.json else sys.stdout
    print(_export_gate(args), file=notes)  # before torch loads: a refusal costs nothing
    from serving.export import export as export_version

    started = time.monotonic()

    def step(stage: str) -> None:
        if not args.quiet:
            print(f"[export {time.monotonic() - started:5.1f}s] {stage}", file=sys.stderr, flush=True)

    chosen = {"explain_positions": args.explain_positions} if args.explain_positions else {}
    version_dir = export_version(
        args.checkpoint,
        args.repository,
        model_name=args.model_name,
        window=args.window,
        served_top_k=args.served_top_k,
        step=step,
        **chosen,
    )
    if args.json:
        manifest = json.loads((version_dir / "manifest.json").read_text())
        summary = {key: manifest[key] for key in ("window", "top_k", "validation", "onnx_max_abs_diff")}
        print(json.dumps({"version": int(version_dir.name), "path": str(version_dir), **summary}))
    else:
        print(f"exported {version_dir}")
    return EXIT_OK


def _export_gate(args: argparse.Namespace) -> str:
    """The checkpoint's validation figures against the served version's (GateRefused when lower)."""
    from serving.model_versions import served_version
    from serving.quality_gate import GateFigures, check_gate, validation_metrics

    metrics_file = args.checkpoint / "metrics.json"
    # No metrics file: nothing to compare, and loading the checkpoint says what is wrong with it.
    trained = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    served = served_version(args.repository / args.model_name)
    candidate = GateFigures(
        "the checkpoint, validation",
        validation_metrics(trained) or {},
        (trained.get("data") or {}).get("fingerprint"),
    )
    if not candidate.metrics:
        return "gate: the checkpoint has no validation metrics to compare"
    current = None
    if served is not None and served.manifest.get("validation"):
        fingerprint = (served.manifest.get("data") or {}).get("fingerprint")
        current = GateFigures(
            f"served version {served.number}, validation", served.manifest["validation"], fingerprint
        )
    return check_gate(candidate, current, args.force)


def add_items(args: argparse.Namespace) -> int:
    from serving.cold_start import ROW_SCALE
    from serving.cold_start_checkpoint import add_items_to_checkpoint
    from serving.data import read_item_texts

    if not (args.checkpoint / "hparams.json").is_file():
        raise InputFileError(f"{args.checkpoint} is not a checkpoint directory (no hparams.json)")
    row_scale = ROW_SCALE if args.row_scale is None else args.row_scale
    texts = read_item_texts(require_file(args.items))
    done = add_items_to_checkpoint(args.checkpoint, texts, args.out, row_scale)
    mapping = "fitted on the known items' texts" if done.mapping_fitted else "reused from the checkpoint"
    print(
        f"added {done.added} item(s), {done.skipped} already known, in {done.seconds:.1f} s; text mapping "
        f"{mapping} (explains {done.explained:.0%} of the item rows' variance); checkpoint in {args.out}"
    )
    return EXIT_OK
