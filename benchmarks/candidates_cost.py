"""What serving more candidates costs the stream: the same checkpoint exported with K = 20 and
K = 50 served candidates, each drained by a real worker (re-ranking, exploration, popularity
correction and explanations at their defaults) on the embedded broker and CPU Triton.

Diversity re-ranking chooses the published items from the K served ones, so a larger K buys
diversity and long-tail reach (docs/2026-11-29-beyond-accuracy.md) with bigger responses
(similarities are K x K) and more work per window in Triton and in the worker. After one
unmeasured drain each, rounds take the two exports in ABBA order, each drain on a broker of
its own with the same events, so the machine's drift falls on both alike; the figure is the
ratio of median drain rates, with the per-pair ratios as its spread.

Usage:
    python -m benchmarks.candidates_cost --out DIR [--checkpoint DIR] [--rounds 4] [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import Servers, drain_rate, fresh_broker, log, workers
from benchmarks.workload import EventSupply
from serving.export import export
from stream.settings import load_settings
from tools.demo_model import ensure_model
from tools.embedded import EmbeddedTriton

__all__ = ["run"]

CANDIDATES = (20, 50)
_USERS = 1_000


def _model_name(k: int) -> str:
    return f"nextaction-k{k}"


def _checkpoint(workdir: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    checkpoint = workdir / "checkpoint"
    ensure_model(workdir / "demo-repository", "nextaction", checkpoint=checkpoint)
    return checkpoint


def run(out: Path, checkpoint: Path | None, rounds: int, events: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    rates: dict[int, list[float]] = {k: [] for k in CANDIDATES}
    with tempfile.TemporaryDirectory(prefix="nextaction-candidates-") as tmp:
        workdir = Path(tmp)
        source = _checkpoint(workdir, checkpoint)
        repository = workdir / "repository"
        for k in CANDIDATES:
            log(f"exporting the checkpoint with {k} served candidates")
            export(source, repository, model_name=_model_name(k), served_top_k=k)
        with EmbeddedTriton(repository, workdir / "embedded") as triton:
            for k in CANDIDATES:
                triton.wait_for_model(_model_name(k))
            servers = Servers(triton.grpc_url, workdir, settings)

            def drain(k: int, name: str) -> float:
                backlog = EventSupply(users=_USERS, seed=5).take(events)
                with fresh_broker(servers) as phase, workers(phase, name, _model_name(k)) as started:
                    worker_settings, urls = started
                    return asyncio.run(drain_rate(phase, worker_settings, urls, backlog))

            for k in CANDIDATES:
                log(f"warm-up drain, K = {k}: {drain(k, f'k{k}-warm-up'):,.0f} events/s (not counted)")
            for round_ in range(rounds):
                order = CANDIDATES if round_ % 4 in (0, 3) else CANDIDATES[::-1]
                for k in order:
                    rate = drain(k, f"k{k}-{round_}")
                    rates[k].append(rate)
                    log(f"round {round_ + 1}/{rounds}, K = {k}: {rate:,.0f} events/s")
    medians = {k: statistics.median(values) for k, values in rates.items()}
    small, large = CANDIDATES
    report = {
        "events_per_drain": events,
        "users": _USERS,
        "rounds": rounds,
        "drain_events_per_s": {str(k): values for k, values in rates.items()},
        "median_events_per_s": {str(k): value for k, value in medians.items()},
        f"k{large}_over_k{small}": medians[large] / medians[small],
        "per_round_ratio": [b / a for a, b in zip(rates[small], rates[large], strict=True)],
    }
    (out / "candidates_cost.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="candidates_cost.json here")
    parser.add_argument("--checkpoint", type=Path, help="default: the demo's model, trained here")
    parser.add_argument("--rounds", type=int, default=4, help="a multiple of 2 keeps the order balanced")
    parser.add_argument("--events", type=int, default=30_000, help="events per drain")
    args = parser.parse_args(argv)
    report = run(args.out, args.checkpoint, args.rounds, args.events)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
