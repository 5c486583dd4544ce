"""Handlers of the stream's commands: worker, demo, replay, dump-events. Torch-free."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from cli.main import EXIT_OK
from stream.settings import Settings, SettingsError, load_settings

__all__ = ["demo", "dump_events", "replay", "worker"]


def worker(args: argparse.Namespace) -> int:
    from stream.worker import run_worker

    settings = load_settings()
    with ExitStack() as servers:
        if args.embedded:
            settings = _with_embedded_servers(settings, servers)
        run_worker(settings, loglevel=args.loglevel)
    return EXIT_OK


def _with_embedded_servers(settings: Settings, servers: ExitStack) -> Settings:
    """Start a local Tansu and tritonserver for the addresses that are not set."""
    from tools.demo_model import has_version
    from tools.embedded import EmbeddedBroker, EmbeddedTriton

    if settings.kafka_bootstrap and settings.triton_grpc_url:
        raise SettingsError("--embedded starts servers for unset addresses, but both are set")
    update: dict[str, str] = {}
    if not settings.kafka_bootstrap:
        broker = servers.enter_context(EmbeddedBroker(settings.embedded_dir))
        update |= {"kafka_bootstrap": broker.bootstrap, "kafka_broker_kind": "tansu"}
    if not settings.triton_grpc_url:
        if not has_version(settings.model_repository, settings.triton_model_name):
            raise SettingsError(
                f"no model version in {settings.model_repository / settings.triton_model_name}: run "
                "`nextaction demo` once, or `nextaction train` and `nextaction export` "
                "(NEXTACTION_MODEL_REPOSITORY points elsewhere)"
            )
        triton = servers.enter_context(EmbeddedTriton(settings.model_repository, settings.embedded_dir))
        update["triton_grpc_url"] = triton.grpc_url
    return settings.model_copy(update=update)


def demo(args: argparse.Namespace) -> int:
    from tools.demo import run_demo

    summary = run_demo(load_settings(), users=args.users, rate_per_s=args.rate, show=args.show)
    print(f"\n[demo] summary: {summary.render()}")
    return EXIT_OK


def replay(args: argparse.Namespace) -> int:
    from serving.data import read_events_jsonl
    from tools.replay import event_message, replay

    settings = _with_broker(load_settings(), "replay")
    stats = replay(
        settings.kafka_bootstrap,
        settings.topic_events,
        (event_message(event) for event in read_events_jsonl(args.file)),
        rate_per_s=args.rate,
    )
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
