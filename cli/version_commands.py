"""Handlers of the model lifecycle commands: models, rollback, retrain, catalogue. Listing and
roll-back read and copy version folders only (no torch); retrain and catalogue import torch
when they run."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cli.main import EXIT_OK, InputFileError
from serving.model_versions import ModelVersion, list_versions, rollback, served_version

__all__ = ["catalogue", "models", "retrain", "rollback_version"]


def _loaded_versions(triton_url: str, model_name: str) -> list[int]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton_url)
    try:
        return sorted(int(v) for v in client.get_model_metadata(model_name).versions)
    finally:
        client.close()


def models(args: argparse.Namespace) -> int:
    versions = list_versions(args.repository / args.model_name)
    served = versions[-1].number if versions else None
    loaded = _loaded_versions(args.triton_url, args.model_name) if args.triton_url else None
    rows = [{**v.summary(), "served": v.number == served} for v in versions]
    if args.json:
        print(json.dumps({"versions": rows, "served": served, "triton_loaded": loaded}, indent=2))
        return EXIT_OK
    if not rows:
        print(f"no versions in {args.repository / args.model_name}")
    for row in rows:
        print(_line(row))
    if loaded is not None:
        print(f"Triton at {args.triton_url} has loaded version(s) {loaded}")
    return EXIT_OK


def _line(row: dict[str, Any]) -> str:
    validation = row["validation"] or {}
    metrics = (
        f"val HR@10 {validation['hr@10']:.4f} NDCG@10 {validation['ndcg@10']:.4f}"
        if validation
        else "val metrics -"
    )
    fingerprint = (row["data_fingerprint"] or "-")[:12]
    copy = f" copy of {row['copy_of']} (rolled back from {row['rolled_back_from']})" if row["copy_of"] else ""
    served = "  <- served" if row["served"] else ""
    code = (row["code_revision"] or "-")[:12]
    return (
        f"{row['version']:>4}  {row['created'] or '-':<25}  data {fingerprint:<12}  {metrics}  "
        f"window {row['window']} top-k {row['top_k']}  code {code}{copy}{served}"
    )


def rollback_version(args: argparse.Namespace) -> int:
    served, target, version_dir = rollback(args.repository / args.model_name, args.to)
    print(
        f"rolled back from version {served.number} to the content of version {target.content}: "
        f"published as version {version_dir.name} ({version_dir}); Triton serves it at its next poll"
    )
    return EXIT_OK


def retrain(args: argparse.Namespace) -> int:
    from cli.stream_commands import _with_broker
    from serving.retrain import retrain as retrain_model
    from serving.retrain import since_version
    from serving.train import TrainConfig
    from stream.settings import load_settings
    from tools.dump import topic_events

    served = served_version(args.repository / args.model_name)
    if served is None:
        raise InputFileError(f"no version in {args.repository / args.model_name} to retrain from")
    settings = _with_broker(load_settings(), "retrain")
    read = [
        (e.partition, e.offset, e.event)
        for e in topic_events(settings.kafka_bootstrap, settings, args.idle)
        if e.event is not None
    ]
    new = since_version(read, served, settings.topic_events)
    if len(new) <= args.holdout:
        print(
            f"{len(new)} event(s) since version {served.number}: too few to retrain (need > {args.holdout})"
        )
        return EXIT_OK
    offsets = _next_offsets(served, read, settings.topic_events)
    config = TrainConfig(time_budget_s=args.time_budget * 60.0, seed=args.seed)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs)
    with tempfile.TemporaryDirectory(prefix="nextaction-retrain-") as tmp:
        out = args.checkpoint_out or Path(tmp) / "checkpoint"
        result = retrain_model(
            [event for _, _, event in new],
            served,
            out,
            config,
            holdout=args.holdout,
            warm=not args.from_scratch,
            force=args.force,
            min_gain=args.min_gain,
            provenance={"trained_to": {"topic": settings.topic_events, "offsets": offsets}},
        )
    start = "from scratch" if args.from_scratch else f"warm-started ({result.warm_started_items} items kept)"
    print(f"retrained on {len(new) - args.holdout} events since version {served.number}, {start}")
    print(result.verdict)
    print(f"exported {result.version_dir}")
    return EXIT_OK


def _next_offsets(served: ModelVersion, read: list[tuple[int, int, Any]], topic: str) -> dict[str, int]:
    """Per partition, the offset after the newest record read (or the one recorded before)."""
    trained_to = served.manifest.get("trained_to") or {}
    offsets = dict(trained_to.get("offsets", {})) if trained_to.get("topic") == topic else {}
    for partition, offset, _ in read:
        offsets[str(partition)] = max(offsets.get(str(partition), 0), offset + 1)
    return offsets


def catalogue(args: argparse.Namespace) -> int:
    from cli.stream_commands import _with_broker
    from stream.kafka_security import KafkaSecurity
    from stream.settings import load_settings

    settings = _with_broker(load_settings(), "catalogue")
    security = KafkaSecurity.from_settings(settings)
    # A stop mid-export must unwind: the export removes its staging folder on the way out.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return _follow_catalogue(args, settings.kafka_bootstrap, settings.topic_catalogue, security)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _follow_catalogue(args: argparse.Namespace, bootstrap: str, topic: str, security: Any) -> int:
    failures = 0
    while True:
        try:
            _catalogue_pass(args, bootstrap, topic, security)
            failures = 0
        except Exception as exc:
            failures += 1
            # Following, a broker away or a version being written is no reason to stop; ten
            # failed passes in a row are.
            if not args.follow or failures >= _MAX_FAILED_PASSES:
                raise
            print(
                f"catalogue pass failed ({failures} in a row): {exc!r}; next in {args.interval:g} s",
                file=sys.stderr,
                flush=True,
            )
        if not args.follow:
            return EXIT_OK
        time.sleep(args.interval)


_MAX_FAILED_PASSES = 10


def _catalogue_pass(args: argparse.Namespace, bootstrap: str, topic: str, security: Any) -> None:
    from serving.catalogue_update import add_catalogue_items
    from serving.cold_start import ROW_SCALE
    from serving.model_versions import StaleVersionError
    from tools.catalogue_topic import read_catalogue

    row_scale = ROW_SCALE if args.row_scale is None else args.row_scale
    read = read_catalogue(bootstrap, topic, args.idle, security)
    for rejected in read.rejected:
        print(f"skipped the catalogue record at {rejected}", file=sys.stderr)
    while True:
        # Looked up every time: a retrain or a roll-back may have published meanwhile.
        served = served_version(args.repository / args.model_name)
        if served is None:
            raise InputFileError(f"no version in {args.repository / args.model_name} to add items to")
        try:
            update = add_catalogue_items(served, read.texts, row_scale)
        except StaleVersionError as exc:
            print(f"{exc}: building on it instead", file=sys.stderr, flush=True)
            continue
        break
    if update.version_dir is None:
        print(f"{len(read.texts)} catalogue item(s), none new to version {served.number}", flush=True)
    else:
        print(
            f"added {len(update.new_items)} new item(s) to version {served.number} in "
            f"{update.seconds:.1f} s: exported {update.version_dir}; Triton serves it at its next poll",
            flush=True,
        )
