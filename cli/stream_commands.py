"""Handlers of the stream's commands: worker, demo, replay, dump-events, watch. Torch-free."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack

from cli.main import EXIT_OK, require_file
from stream.settings import Settings, SettingsError, load_settings
from tools.progress import Progress

__all__ = ["demo", "dump_events", "replay", "watch", "worker"]

_PLAIN_WIDTH = 200


def worker(args: argparse.Namespace) -> int:
    from stream.worker import run_worker
    from tools.local_servers import start_missing_servers

    settings = load_settings()
    with ExitStack() as servers:
        if args.embedded:
            if settings.kafka_bootstrap and settings.triton_grpc_url:
                raise SettingsError("--embedded starts servers for unset addresses, but both are set")
            settings = start_missing_servers(settings, servers)
        run_worker(settings, loglevel=args.loglevel)
    return EXIT_OK


def demo(args: argparse.Namespace) -> int:
    from tools.demo import run_demo

    settings = load_settings()
    run_demo(settings, users=args.users, rate_per_s=args.rate, show=args.show, keep_running=args.keep_running)
    return EXIT_OK


def replay(args: argparse.Namespace) -> int:
    from stream.kafka_security import KafkaSecurity
    from tools.replay import file_messages, replay

    settings = _with_broker(load_settings(), "replay")
    messages = file_messages(require_file(args.file))
    progress = Progress("replay: events sent", total=len(messages), quiet=args.quiet)
    stats = replay(
        settings.kafka_bootstrap,
        settings.topic_events,
        messages,
        rate_per_s=args.rate,
        on_sent=lambda _key, _value: progress.advance(),
        security=KafkaSecurity.from_settings(settings),
    )
    progress.close()
    _summary(
        args,
        {"sent": stats.sent, "seconds": round(stats.seconds, 3), "topic": settings.topic_events},
        f"sent {stats.sent:,} events in {stats.seconds:.1f}s",
    )
    return EXIT_OK


def dump_events(args: argparse.Namespace) -> int:
    from tools.dump import dump_events

    settings = _with_broker(load_settings(), "dump-events")
    progress = Progress("dump-events: records read", quiet=args.quiet)
    stats = dump_events(settings.kafka_bootstrap, settings, args.file, on_record=progress.advance)
    progress.close()
    _summary(
        args,
        {"written": stats.written, "skipped_invalid": stats.skipped_invalid, "file": str(args.file)},
        f"wrote {stats.written:,} events to {args.file} ({stats.skipped_invalid:,} invalid skipped)",
    )
    return EXIT_OK


def watch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tools.watch import WatchOptions, watch

    settings = _with_broker(load_settings(), "watch")
    options = WatchOptions(
        from_beginning=args.from_beginning,
        duration_s=args.duration,
        max_recommendations=args.count,
        once=args.once,
        shown=args.show,
        latency_window_s=args.latency_window,
    )
    # Off a terminal (a file, a test) rich would wrap at 80 columns and cut the explanations.
    console = Console() if sys.stdout.isatty() else Console(width=_PLAIN_WIDTH)
    watch(settings, options, console)
    return EXIT_OK


def _summary(args: argparse.Namespace, doc: dict[str, object], text: str) -> None:
    """A command's result: one JSON document on stdout with --json, else a line for people."""
    print(json.dumps(doc) if args.json else text)


def _with_broker(settings: Settings, command: str) -> Settings:
    if not settings.kafka_bootstrap:
        raise SettingsError(f"{command} needs NEXTACTION_KAFKA_BOOTSTRAP (host:port of the broker)")
    return settings
