"""Command line: ``python -m serving.cli {generate,train,export} ...``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from serving.datasets import FORMATS, load_dataset
from serving.synthetic import SyntheticConfig, generate_events, planted_pairs, write_events_jsonl

__all__ = ["main"]


def _generate(args: argparse.Namespace) -> int:
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
    return 0


def _train(args: argparse.Namespace) -> int:
    # Imported here so that `generate` works without loading torch.
    from serving.model import ModelConfig
    from serving.train import TrainConfig, train

    budget_s = None if args.time_budget is None else args.time_budget * 60.0
    model = ModelConfig(window=args.window, hidden=args.hidden, layers=args.layers, heads=args.heads)
    training = TrainConfig(time_budget_s=budget_s, seed=args.seed)
    if args.max_networks:
        training = replace(training, max_networks=args.max_networks)
    if args.epochs:
        training = replace(training, epochs=args.epochs)
    if args.dropout is not None:  # a fixed dropout: no race
        model, training = replace(model, dropout=args.dropout), replace(training, dropout_choices=())
    checkpoint = train(
        load_dataset(args.data, args.format).sequences, args.out, model, training, progress=not args.quiet
    )
    m = checkpoint.metrics
    print(
        f"best epoch {m['best_epoch']} ({m['train_seconds']:.0f} s), {m['networks']} network(s) "
        f"averaged; checkpoint in {args.out}"
    )
    for name, result in m["results"].items():
        test = result["test"]
        print(f"  {name:<10} test HR@10 {test['hr@10']:.4f} NDCG@10 {test['ndcg@10']:.4f}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from serving.export import export

    chosen = {"explain_positions": args.explain_positions} if args.explain_positions else {}
    version_dir = export(
        args.checkpoint,
        args.repository,
        model_name=args.model_name,
        window=args.window,
        top_k=args.top_k,
        **chosen,
    )
    print(f"exported {version_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write synthetic events as JSON lines")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--users", type=int, default=1000)
    generate.add_argument("--items", type=int, default=500)
    generate.add_argument("--categories", type=int, default=20)
    generate.add_argument("--events-per-user", type=float, default=40.0)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--pairs-out", type=Path, help="also write the planted A->B pairs (JSON)")
    generate.set_defaults(handler=_generate)

    train = commands.add_parser("train", help="train a checkpoint and compare it with baselines")
    train.add_argument("--data", type=Path, required=True)
    train.add_argument("--format", choices=sorted(FORMATS), default="events")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--epochs", type=int, help="most epochs (default 200; early stopping ends sooner)")
    train.add_argument("--dropout", type=float, help="fixed dropout (default: chosen on validation)")
    train.add_argument("--time-budget", type=float, help="minutes; stops after the epoch crossing it")
    train.add_argument(
        "--max-networks",
        type=int,
        help="most networks averaged, each kept only if it lifts validation NDCG@10 enough "
        "(default 2; 1 for the cheapest model to serve)",
    )
    train.add_argument("--window", type=int, default=50)
    train.add_argument("--hidden", type=int, default=64)
    train.add_argument("--layers", type=int, default=2)
    train.add_argument("--heads", type=int, default=2)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_train)

    export = commands.add_parser("export", help="export a checkpoint into a Triton repository")
    export.add_argument("--checkpoint", type=Path, required=True)
    export.add_argument("--repository", type=Path, required=True)
    export.add_argument("--model-name", default="nextaction")
    export.add_argument("--window", type=int, help="default: the trained window")
    export.add_argument("--top-k", type=int, default=20)
    export.add_argument(
        "--explain-positions", type=int, help="newest events whose removal is measured (default 8)"
    )
    export.set_defaults(handler=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
