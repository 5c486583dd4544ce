"""``nextaction``: one command for the stream (demo, worker, replay) and the model tools.

Model subcommands (generate, train, export, ...) run ``serving.cli``; it is imported only
when one of them is asked for, so the stream never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from stream.demo import run_demo
from stream.dump import dump_events
from stream.embedded import EmbeddedServerError
from stream.inference import TritonUnavailable
from stream.replay import as_messages, replay
from stream.settings import Settings, SettingsError, load_settings
from stream.worker import run_worker

__all__ = ["main"]

_MODEL_COMMANDS = ("generate", "train", "export")
# The benchmark lives outside the service's packages; it is imported only when asked for.
_BENCH_COMMAND = "bench"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _MODEL_COMMANDS:
        serving_cli = importlib.import_module("serving.cli")
        return int(serving_cli.main(args_list) or 0)
    if args_list and args_list[0] == _BENCH_COMMAND:
        bench = importlib.import_module("benchmarks.stream_bench")
        return int(bench.main(args_list[1:]) or 0)
    args = _parser().parse_args(args_list)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every connection at INFO; its warnings are what operators need.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    if args.command == "worker":
        try:
            run_worker(settings, loglevel=args.loglevel)
        except (TritonUnavailable, EmbeddedServerError) as exc:
            print(f"nextaction worker: {exc}", file=sys.stderr)
            return 1
    elif args.command == "demo":
        summary = run_demo(settings, users=args.users, rate_per_s=args.rate, show=args.show)
        print(f"\n[demo] summary: {summary.render()}")
    elif args.command == "replay":
        return _replay(settings, args.file, args.rate)
    elif args.command == "dump-events":
        if not settings.kafka_bootstrap:
            print("dump-events needs NEXTACTION_KAFKA_BOOTSTRAP (the broker to read)", file=sys.stderr)
            return 2
        stats = dump_events(settings.kafka_bootstrap, settings, args.file)
        print(f"wrote {stats.written:,} events to {args.file} ({stats.skipped_invalid:,} invalid skipped)")
    return 0


def _replay(settings: Settings, path: Path, rate: float) -> int:
    if not settings.kafka_bootstrap:
        print("replay needs NEXTACTION_KAFKA_BOOTSTRAP (the broker to send to)", file=sys.stderr)
        return 2
    with path.open("rb") as lines:
        stats = replay(
            settings.kafka_bootstrap,
            settings.topic_events,
            as_messages(orjson.loads(line) for line in lines if line.strip()),
            rate_per_s=rate,
        )
    print(f"sent {stats.sent:,} events in {stats.seconds:.1f}s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextaction",
        description="Real-time next-action recommendations. Model tools: "
        + ", ".join(_MODEL_COMMANDS)
        + " (see `nextaction train --help`); stream benchmark: bench (`nextaction bench --help`).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="whole pipeline on embedded servers")
    demo.add_argument("--users", type=int, default=200, help="synthetic users to replay")
    demo.add_argument("--rate", type=float, default=200.0, help="events per second")
    demo.add_argument("--show", type=int, default=4, help="recommendations to print")
    worker = commands.add_parser("worker", help="run one stream worker")
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    replay = commands.add_parser("replay", help="send a JSON-lines event file to the events topic")
    replay.add_argument("file", type=Path)
    replay.add_argument("--rate", type=float, default=1000.0, help="events per second")
    dump = commands.add_parser(
        "dump-events", help="write the events topic's valid events as JSON lines (training data)"
    )
    dump.add_argument("file", type=Path)
    return parser
