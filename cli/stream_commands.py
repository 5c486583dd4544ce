"""Handlers of the stream's commands: worker, demo, replay, dump-events. Torch-free."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from cli.main import EXIT_OK, require_file
from stream.settings import Settings, SettingsError, load_settings

__all__ = ["demo", "dump_events", "replay", "worker"]


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

    summary = run_demo(load_settings(), users=args.users, rate_per_s=args.rate, show=args.show)
    print(f"\n[demo] summary: {summary.render()}")
    return EXIT_OK


def replay(args: argparse.Namespace) -> int:
    from tools.replay import file_messages, replay

    settings = _with_broker(load_settings(), "replay")
    messages = file_messages(require_file(args.file))
    stats = replay(settings.kafka_bootstrap, settings.topic_events, messages, rate_per_s=args.rate)
    print(f"sent {stats.sent:,} events in {stats.seconds:.1f}s")
    return EXIT_OK


def dump_events(args: argparse.Namespace) -> int:
    from tools.dump import dump_events

    settings = _with_broker(load_settings(), "dump-events")
    stats = dump_events(settings.kafka_bootstrap, settings, args.file)
    print(f"wrote {stats.written:,} events to {args.file} ({stats.skipped_invalid:,} invalid skipped)")
    return EXIT_OK


def _with_broker(settings: Settings, command: str) -> Settings:
    if not settings.kafka_bootstrap:
        raise SettingsError(f"{command} needs NEXTACTION_KAFKA_BOOTSTRAP (host:port of the broker)")
    return settings
