"""Handlers of the benchmark commands: bench (the stream), quality (the model), beyond (beyond
accuracy), perf-input, chaos (fault injection), recovery (restoring the windows table)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import TYPE_CHECKING

from cli.main import EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from benchmarks.model_quality import DataSpec

__all__ = ["bench", "beyond", "chaos", "perf_input", "quality", "recovery"]


def bench(args: argparse.Namespace) -> int:
    from benchmarks.stream_bench import run

    run(args.out, args.plot, users=args.users)
    return EXIT_OK


def _data_specs(command: str, texts: list[str]) -> list[DataSpec] | None:
    """The FORMAT:PATH arguments, or None after saying which one is wrong."""
    from benchmarks.model_quality import DataSpec

    try:
        return [DataSpec.parse(text) for text in texts]
    except ValueError as exc:
        print(f"nextaction {command}: {exc}", file=sys.stderr)
        return None


def quality(args: argparse.Namespace) -> int:
    from benchmarks.model_quality import run_all

    specs = _data_specs("quality", args.data)
    if specs is None:
        return EXIT_USAGE
    run_all(
        specs,
        time_budget_min=args.time_budget,
        seeds=args.seeds,
        max_networks=args.max_networks,
        out=args.out,
        checkpoints=args.checkpoints,
    )
    return EXIT_OK


def beyond(args: argparse.Namespace) -> int:
    from benchmarks.beyond_accuracy import run

    specs = _data_specs("beyond", args.data)
    if specs is None:
        return EXIT_USAGE
    run(specs, out=args.out, checkpoints=args.checkpoints, time_budget_min=args.time_budget, cases=args.cases)
    return EXIT_OK


def perf_input(args: argparse.Namespace) -> int:
    from benchmarks.perf_input import write_perf_input

    count = write_perf_input(args.out, windows=args.windows, length=args.length)
    print(f"wrote {count} windows to {args.out}")
    return EXIT_OK


def chaos(args: argparse.Namespace) -> int:
    from benchmarks.chaos.runner import run

    if args.model_repository is not None and not args.model_repository.is_dir():
        print(f"nextaction chaos: {args.model_repository}: no such directory", file=sys.stderr)
        return EXIT_USAGE
    rows = run(
        args.out,
        quick=args.quick,
        scenarios=args.scenarios,
        model_repository=args.model_repository,
        checkpoint=args.checkpoint,
        workdir=args.workdir,
        seed=args.seed,
    )
    missed = [row.scenario for row in rows if not row.held]
    print(f"targets missed: {', '.join(missed)}" if missed else "every scenario held its targets")
    return EXIT_OK


def recovery(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("rocksdict") is None:
        print("nextaction recovery: the rocksdb store needs pip install 'nextaction[disk]'", file=sys.stderr)
        return EXIT_USAGE
    from benchmarks.recovery import run

    run(args.users, args.out)
    return EXIT_OK
