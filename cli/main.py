"""``nextaction``: one argparse tree for every command, and the exit codes they share.

Each command's handler lives in a module imported only when that command runs, so the worker
never loads torch and ``--help`` is quick. Expected failures (a server that cannot be reached,
a bad setting or input file, a failed training) end with a one-line message and their exit
code; anything else is a bug and shows its traceback.

Longer than 300 lines: the whole command tree, every command's arguments and help, is kept in
one module so that it reads as one list (each command's handler lives elsewhere).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from cli.argument_types import positive, scenario_numbers, user_counts
from serving.model_config import ModelConfig
from serving.triton_config import SERVED_TOP_K
from stream.shutdown import EXIT_SHUTDOWN_TIMED_OUT

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_MODEL_FAILED",
    "EXIT_OK",
    "EXIT_SHUTDOWN_TIMED_OUT",
    "EXIT_STREAM_FAILED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "InputFileError",
    "build_parser",
    "expected_failure",
    "main",
    "require_file",
]

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2  # bad arguments or settings (argparse uses 2 as well)
EXIT_UNREACHABLE: Final = 3  # the broker or Triton cannot be reached, or an embedded one fails to start
EXIT_BAD_INPUT: Final = 4  # an input file is missing or malformed
EXIT_MODEL_FAILED: Final = 5  # training, export or the demo's model bootstrap failed
EXIT_STREAM_FAILED: Final = 6  # a worker stopped because a batch failed; a restart re-reads it
EXIT_INTERRUPTED: Final = 130  # Ctrl-C

_KAFKA_HINT: Final = "\n(check NEXTACTION_KAFKA_BOOTSTRAP, and that the brokers are up)"
# Expected failures by (module, exception class): exit code, and a hint after the message.
# A module not loaded yet cannot have raised, so only loaded ones are looked at: classifying
# never imports torch.
_EXPECTED_FAILURES: Final = (
    ("stream.settings", "SettingsError", EXIT_USAGE, ""),
    ("cli.main", "InputFileError", EXIT_BAD_INPUT, ""),
    ("stream.inference", "TritonUnavailable", EXIT_UNREACHABLE, ""),
    ("tools.embedded.process", "EmbeddedServerError", EXIT_UNREACHABLE, ""),
    ("kafka.errors", "NoBrokersAvailable", EXIT_UNREACHABLE, _KAFKA_HINT),
    ("kafka.errors", "KafkaConnectionError", EXIT_UNREACHABLE, _KAFKA_HINT),
    ("kafka.errors", "KafkaTimeoutError", EXIT_UNREACHABLE, _KAFKA_HINT),
    ("aiokafka.errors", "KafkaConnectionError", EXIT_UNREACHABLE, _KAFKA_HINT),
    ("serving.data", "DataFormatError", EXIT_BAD_INPUT, ""),
    ("serving.train", "TrainingDataError", EXIT_BAD_INPUT, ""),
    ("tools.demo_model", "ModelBootstrapError", EXIT_MODEL_FAILED, ""),
    ("serving.checkpoint", "CheckpointError", EXIT_MODEL_FAILED, ""),
    ("serving.export", "ExportError", EXIT_MODEL_FAILED, ""),
    ("serving.quality_gate", "GateRefused", EXIT_MODEL_FAILED, ""),
    ("serving.model_versions", "RollbackError", EXIT_USAGE, ""),
    ("serving.item_text", "EncoderMissingError", EXIT_USAGE, ""),
    ("serving.cold_start_checkpoint", "MissingTextsError", EXIT_BAD_INPUT, ""),
    ("tools.catalogue_topic", "MissingTopicError", EXIT_USAGE, ""),
    ("stream.failure", "WorkerFailed", EXIT_STREAM_FAILED, ""),
)
# Libraries of the [model] extra, which a worker-only install lacks.
_MODEL_LIBRARIES: Final = frozenset(
    {"torch", "transformers", "onnx", "onnxruntime", "onnxscript", "tqdm", "matplotlib"}
)
# `train`'s shape flags default to the hyperparameters a checkpoint gets without them.
MODEL_DEFAULTS: Final = ModelConfig()


class InputFileError(Exception):
    """A file the user named does not exist or is not a file."""


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every connection at INFO; its warnings are what operators need.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    module, _, function = args.handler.partition(":")
    try:
        handler: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
        return handler(args)
    except KeyboardInterrupt:
        print(f"nextaction {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        failure = expected_failure(exc)
        if failure is None:
            raise
        code, hint = failure
        print(f"nextaction {args.command}: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return code


def expected_failure(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, hint) of an expected failure; None for anything else, which is a bug."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in _MODEL_LIBRARIES:
        return EXIT_USAGE, "\n(this command needs the model libraries: pip install 'nextaction[model]')"
    for module_name, class_name, code, hint in _EXPECTED_FAILURES:
        module = sys.modules.get(module_name)
        failure = getattr(module, class_name, None) if module is not None else None
        if isinstance(failure, type) and isinstance(exc, failure):
            return code, hint
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextaction",
        description="Real-time next-action recommendations with explanations.",
        epilog=f"Exit codes: {EXIT_OK} done, 1 unexpected error, {EXIT_USAGE} bad arguments or settings, "
        f"{EXIT_UNREACHABLE} broker or Triton unreachable, {EXIT_BAD_INPUT} bad input file, "
        f"{EXIT_MODEL_FAILED} training or export failed, {EXIT_STREAM_FAILED} a worker's batch failed "
        f"(restart it), {EXIT_SHUTDOWN_TIMED_OUT} a worker outlived its shutdown timeout (restart it), "
        f"{EXIT_INTERRUPTED} interrupted.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _stream_commands(commands)
    _model_commands(commands)
    _version_commands(commands)
    _benchmark_commands(commands)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: str, help_text: str
) -> argparse.ArgumentParser:
    """A subcommand whose handler is ``module:function``, imported when the command runs."""
    command = commands.add_parser(name, help=help_text, description=help_text)
    command.set_defaults(handler=handler)
    return command


def _stream_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = _command(
        commands,
        "worker",
        "cli.stream_commands:worker",
        "run one stream worker (needs NEXTACTION_KAFKA_BOOTSTRAP and NEXTACTION_TRITON_GRPC_URL)",
    )
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.add_argument(
        "--embedded",
        action="store_true",
        help="start a local Tansu broker and tritonserver for this worker (a first look, not production)",
    )
    demo = _command(commands, "demo", "cli.stream_commands:demo", "the whole pipeline on embedded servers")
    demo.add_argument("--users", type=int, default=200, help="synthetic users to replay")
    demo.add_argument("--rate", type=float, default=200.0, help="events per second")
    demo.add_argument("--show", type=int, default=4, help="recommendations to print")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="after the demo's events, keep the pipeline up and print its addresses for your own "
        "producers; Ctrl-C or SIGTERM stops it",
    )
    replay = _command(
        commands, "replay", "cli.stream_commands:replay", "send a JSON-lines event file to the events topic"
    )
    replay.add_argument("file", type=Path)
    replay.add_argument("--rate", type=float, default=1000.0, help="events per second")
    dump = _command(
        commands,
        "dump-events",
        "cli.stream_commands:dump_events",
        "write the events topic's valid events as JSON lines (training data)",
    )
    dump.add_argument("file", type=Path)
    for scripted in (replay, dump):
        scripted.add_argument("--json", action="store_true", help="print the summary as one JSON document")
        scripted.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    watch = _command(
        commands,
        "watch",
        "cli.stream_commands:watch",
        "a live view of recommendations with their explanations, dead letters by reason and "
        "event-to-recommendation latency (reads the topics with its own consumer; commits nothing)",
    )
    watch.add_argument(
        "--from-beginning", action="store_true", help="read the topics from their start (default: their end)"
    )
    watch.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    watch.add_argument("--count", type=positive, metavar="N", help="stop after N recommendations")
    watch.add_argument(
        "--once", action="store_true", help="no live display: print the view once, when the watch stops"
    )
    watch.add_argument("--show", type=positive, default=5, help="latest recommendations shown")
    watch.add_argument(
        "--latency-window", type=float, default=60.0, metavar="S", help="latency percentiles of the last S s"
    )


def _model_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from serving.datasets import FORMATS  # numpy only

    generate = _command(
        commands, "generate", "cli.model_commands:generate", "write synthetic events as JSON lines"
    )
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--users", type=int, default=1000)
    generate.add_argument("--items", type=int, default=500)
    generate.add_argument("--categories", type=int, default=20)
    generate.add_argument("--events-per-user", type=float, default=40.0)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--pairs-out", type=Path, help="also write the planted A->B pairs (JSON)")
    generate.add_argument(
        "--catalogue",
        type=Path,
        help="also write each item's title and text (JSON lines: NEXTACTION_CATALOGUE_PATH, add-items)",
    )

    train = _command(
        commands, "train", "cli.model_commands:train", "train a checkpoint and compare it with baselines"
    )
    train.add_argument("--data", type=Path, required=True)
    train.add_argument("--format", choices=sorted(FORMATS), default="events")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument(
        "--epochs",
        type=positive,
        help="most epochs (default 60; the time budget or early stopping may end sooner)",
    )
    train.add_argument("--dropout", type=float, help="dropout (default 0.5)")
    train.add_argument(
        "--graph-share",
        type=float,
        help="share of each item's table row trained as its sequence neighbours' average "
        "(default 0.5; 0: off)",
    )
    train.add_argument(
        "--distillation",
        type=float,
        help="weight of a teacher's predictions in the loss of a student trained after it, each on "
        "half the budget; the better on validation is kept (default 0.5; 0: one network)",
    )
    train.add_argument(
        "--time-budget", type=float, help="minutes; the learning rate anneals over it, or over the epochs"
    )
    train.add_argument(
        "--max-networks",
        type=positive,
        help="most networks averaged, each kept only if it lifts validation NDCG@10 enough "
        "and each trained on its share of the time budget (default 1, the cheapest to serve)",
    )
    train.add_argument(
        "--logit-adjustment",
        type=float,
        default=0.0,
        help="train on logits + this x log popularity and serve the raw ones: a popularity-bias "
        "correction at training (default 0: off)",
    )
    train.add_argument("--window", type=int, default=MODEL_DEFAULTS.window)
    train.add_argument("--hidden", type=int, default=MODEL_DEFAULTS.hidden)
    train.add_argument("--layers", type=int, default=MODEL_DEFAULTS.layers)
    train.add_argument("--heads", type=int, default=MODEL_DEFAULTS.heads)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    export = _command(
        commands, "export", "cli.model_commands:export", "export a checkpoint into a Triton repository"
    )
    export.add_argument("--checkpoint", type=Path, required=True)
    export.add_argument("--repository", type=Path, required=True)
    export.add_argument("--model-name", default="nextaction")
    export.add_argument("--window", type=int, help="default: the trained window")
    export.add_argument(
        "--served-top-k",
        type=int,
        default=SERVED_TOP_K,
        help="items the model returns per window; workers publish NEXTACTION_PUBLISHED_TOP_K of them",
    )
    export.add_argument(
        "--explain-positions", type=int, help="newest events whose removal is measured (default 8)"
    )
    export.add_argument(
        "--force", action="store_true", help="export even if validation NDCG@10 is below the served version's"
    )
    export.add_argument("--json", action="store_true", help="print the new version as one JSON document")
    export.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    add_items = _command(
        commands,
        "add-items",
        "cli.model_commands:add_items",
        "add items the checkpoint has never seen, from their texts, without retraining (export the "
        "result to serve them)",
    )
    add_items.add_argument("--checkpoint", type=Path, required=True)
    add_items.add_argument(
        "--items",
        type=Path,
        required=True,
        help='JSON lines {"item_id": ..., "text": ...}: the new items, plus the known items\' texts '
        "when the checkpoint has no text mapping yet (the first addition after training)",
    )
    add_items.add_argument("--out", type=Path, required=True, help="the new checkpoint directory")
    add_items.add_argument(
        "--row-scale",
        type=float,
        help="multiplies the new items' predicted rows: higher shows new items more often "
        "(default 2, measured on MovieLens 100K)",
    )


def _version_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The served versions' lifecycle (docs/model-lifecycle.md)."""
    listing = _command(
        commands, "models", "cli.version_commands:models", "list the repository's versions and the served one"
    )
    rollback = _command(
        commands,
        "rollback",
        "cli.version_commands:rollback_version",
        "serve an earlier version again, published as the new highest version (no restart)",
    )
    rollback.add_argument("--to", type=int, help="the version to serve again (default: the previous one)")
    retrain = _command(
        commands,
        "retrain",
        "cli.version_commands:retrain",
        "train on the events topic since the served version, warm-started from it, and export the result "
        "if it beats the served version on the newest events (needs NEXTACTION_KAFKA_BOOTSTRAP)",
    )
    retrain.add_argument(
        "--holdout", type=positive, default=1000, help="newest events both models are compared on"
    )
    retrain.add_argument("--time-budget", type=float, default=10.0, help="training minutes")
    retrain.add_argument(
        "--epochs", type=positive, help="most epochs (default 200; early stopping ends sooner)"
    )
    retrain.add_argument("--from-scratch", action="store_true", help="no warm start from the served version")
    retrain.add_argument(
        "--min-gain", type=float, default=0.0, help="NDCG@10 the new version must gain on the newest events"
    )
    retrain.add_argument("--force", action="store_true", help="export whatever the newest events say")
    retrain.add_argument(
        "--idle", type=float, default=2.0, help="seconds without a record that end the topic"
    )
    retrain.add_argument(
        "--checkpoint-out", type=Path, help="keep the new checkpoint here (default: discarded)"
    )
    retrain.add_argument("--seed", type=int, default=0)
    catalogue = _command(
        commands,
        "catalogue",
        "cli.version_commands:catalogue",
        "serve the catalogue topic's new items: a new version with rows predicted from their texts, no "
        "retraining (needs NEXTACTION_KAFKA_BOOTSTRAP; the topic is NEXTACTION_TOPIC_CATALOGUE)",
    )
    catalogue.add_argument("--follow", action="store_true", help="a pass every --interval seconds")
    catalogue.add_argument("--interval", type=float, default=60.0, help="seconds between passes")
    catalogue.add_argument(
        "--idle", type=float, default=1.5, help="seconds without a record that end the topic"
    )
    catalogue.add_argument(
        "--row-scale", type=float, help="multiplies the new items' predicted rows (default: as add-items)"
    )
    for command in (listing, rollback, retrain, catalogue):
        command.add_argument("--repository", type=Path, default=Path("model_repository"))
        command.add_argument("--model-name", default="nextaction")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.add_argument(
        "--triton-url", help="also ask this Triton (gRPC host:port) which versions it has loaded"
    )


def _benchmark_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = _command(
        commands,
        "bench",
        "cli.bench_commands:bench",
        "stream throughput and latency against ceilings and a naive baseline (about 8 minutes)",
    )
    bench.add_argument("--out", type=Path, help="write the figures as JSON")
    bench.add_argument(
        "--plot", type=Path, default=Path("bench-latency.png"), help="latency vs offered load (PNG)"
    )
    bench.add_argument("--users", type=int, default=20_000)

    quality = _command(
        commands,
        "quality",
        "cli.bench_commands:quality",
        "model quality on public data against baselines and published results",
    )
    quality.add_argument("data", nargs="+", metavar="FORMAT:PATH", help="e.g. movielens:ml-100k/u.data")
    quality.add_argument(
        "--time-budget", type=float, default=45.0, help="training minutes per data set and seed"
    )
    quality.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="one training per seed (default 0 1 2)"
    )
    quality.add_argument(
        "--max-networks", type=positive, default=1, help="networks averaged, sharing the budget (default 1)"
    )
    quality.add_argument("--out", type=Path, help="write the results as JSON")
    quality.add_argument("--checkpoints", type=Path, help="keep checkpoints here (default: discarded)")

    beyond = _command(
        commands,
        "beyond",
        "cli.bench_commands:beyond",
        "beyond accuracy on public data: deletion tests of the explanations, diversity and exploration "
        "curves, the popularity correction, cold-start items from their text (about 1.5 hours with "
        "trained checkpoints on 2 cores)",
    )
    beyond.add_argument("data", nargs="+", metavar="FORMAT:PATH", help="e.g. movielens:ml-100k/u.data")
    beyond.add_argument("--out", type=Path, required=True, help="beyond.json, beyond.md and the plots")
    beyond.add_argument(
        "--checkpoints", type=Path, required=True, help="checkpoints are reused from here, or trained into it"
    )
    beyond.add_argument("--time-budget", type=float, default=45.0, help="training minutes per data set")
    beyond.add_argument(
        "--cases", type=int, help="test users per data set (default: all; 2,000 for deletions)"
    )

    perf_input = _command(
        commands,
        "perf-input",
        "cli.bench_commands:perf_input",
        "write perf_analyzer input data: real windows with valid item ids",
    )
    perf_input.add_argument("out", type=Path)
    perf_input.add_argument("--windows", type=int, default=256)
    perf_input.add_argument("--length", type=int, default=50, help="the model's window length W")

    chaos = _command(
        commands,
        "chaos",
        "cli.bench_commands:chaos",
        "fault injection on the real pipeline (embedded servers, worker processes): one row per scenario "
        "with events in, accounted for, lost, duplicates, recovery time and peak worker RSS (quick: about "
        "5 minutes, full: about 30, plus about 1.5 to train a model unless --model-repository is given)",
    )
    chaos.add_argument("--out", type=Path, required=True, help="the markdown table; JSON goes next to it")
    chaos.add_argument("--quick", action="store_true", help="small loads and short phases")
    chaos.add_argument(
        "--scenarios",
        type=scenario_numbers,
        default=list(range(1, 9)),
        help="comma-separated numbers, default all: 1 fuzz, 2 Triton killed, 3 worker killed x3, "
        "4 handover, 5 broker restart, 6 SIGTERM, 7 roll-out, 8 soak",
    )
    chaos.add_argument("--model-repository", type=Path, help="serve this repository (default: train one)")
    chaos.add_argument(
        "--checkpoint", type=Path, help="the repository's training checkpoint, for the roll-out's version 2"
    )
    chaos.add_argument("--workdir", type=Path, help="keep logs and server files here (default: temporary)")
    chaos.add_argument("--seed", type=int, default=0, help="seed of the fuzzing and the fault timings")

    recovery = _command(
        commands,
        "recovery",
        "cli.bench_commands:recovery",
        "how long a worker takes to restore its windows table from the changelog, per million users, "
        "with the memory and the rocksdb store, against an empty-changelog baseline (embedded servers, "
        "trivial model; about 10 minutes on 2 cores with the default sizes)",
    )
    recovery.add_argument(
        "--users",
        type=user_counts,
        default=[100_000, 300_000],
        help="comma-separated user counts, one partition (default 100000,300000)",
    )
    recovery.add_argument("--out", type=Path, help="write the figures as JSON")
