"""``nextaction bench``: stream throughput and latency against ceilings and a naive baseline,
all measured in one run on the embedded broker and CPU Triton.

Phases (each prints its progress):
  1. ceilings: plain aiokafka reading the events; Triton scoring pre-built windows (real model)
  2. naive baseline: the same app with an agent that awaits a table update and a Triton call
     per event (trivial model)
  3. the product with the trivial model (stream cost alone), then with the real model: the
     drain rate of a backlog, offered-load steps around it to find the highest rate that
     consumer lag does not outgrow, then event-to-recommendation latency at 25/50/80% of it
  4. scale-out: two workers on a 2-partition topic (trivial model)
  5. window state per user with 100,000 users
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.ceilings import model_only_predictions_per_s, raw_consume_events_per_s
from benchmarks.harness import (
    TRIVIAL_MODEL,
    Servers,
    drain_rate,
    fresh_broker,
    latency_step,
    log,
    offer_step,
    start_servers,
    workers,
)
from benchmarks.load import OutputReader, Producer
from benchmarks.plot import plot_latency
from benchmarks.rate_search import next_offered_rate, sustained_rate
from benchmarks.report import render
from benchmarks.state_size import measure_state
from benchmarks.workload import EventSupply, sample_windows
from stream.admin import ensure_topics
from stream.settings import Settings, load_settings
from tools.demo_model import ensure_model

__all__ = ["BenchConfig", "run", "run_bench"]


@dataclass(frozen=True)
class BenchConfig:
    users: int = 20_000
    drain_seconds: float = 10.0  # target length of a backlog drain
    step_seconds: float = 6.0  # length of one offered-load step
    search_steps: int = 4  # offered-load steps that bracket the highest sustained rate
    # A step is sustained when the workers have published for all its events within this long
    # after the last was sent: a lag that grew during the step takes longer to clear. About the
    # p99 latency near the maximum; a looser bar lets a worker that falls behind pass.
    catch_up_s: float = 0.5
    latency_fractions: tuple[float, ...] = (0.25, 0.5, 0.8)
    naive_events: int = 3_000
    state_users: int = 100_000


def _steady_state_history(config: BenchConfig, settings: Settings) -> int:
    """Events that fill every user's window: the window's length drives what a prediction
    costs, so what is measured after them is the steady state, not windows still growing."""
    return config.users * settings.window_size


def _backlog_events(config: BenchConfig, settings: Settings, expected_rate: float) -> int:
    """A backlog that lasts about ``drain_seconds`` and first fills every user's window."""
    return max(_steady_state_history(config, settings), int(expected_rate * config.drain_seconds))


async def _product(
    servers: Servers, supply: EventSupply, config: BenchConfig, name: str, model: str, expected_rate: float
) -> dict[str, Any]:
    """Drain rate, highest sustained offered rate and latency profile of the real worker."""
    with workers(servers, name, model) as (settings, urls):
        async with OutputReader(servers.bootstrap, settings.topic_recommendations, 1) as reader:
            backlog = supply.take(_backlog_events(config, settings, expected_rate))
            drain = await drain_rate(servers, settings, urls, backlog)
            log(f"{name}: drained a backlog of {len(backlog):,} events at {drain:,.0f} events/s")
            sustained, steps = await _search_sustained(servers, settings, urls, supply, config, name, drain)
            latency = {}
            for fraction in config.latency_fractions:
                rate = sustained * fraction
                messages = supply.take(int(rate * config.step_seconds))
                latency[f"{fraction:.2f}"] = await latency_step(
                    servers, settings, urls, reader, messages, rate, config.catch_up_s
                )
                result = latency[f"{fraction:.2f}"]
                log(
                    f"{name}: at {fraction:.0%} ({rate:,.0f} events/s) p50 {result['p50']:.0f} ms, "
                    f"p95 {result['p95']:.0f} ms, p99 {result['p99']:.0f} ms"
                )
    at_sustained = next(step for step in steps if step["offered_per_s"] == sustained)
    return {
        "drain_events_per_s": drain,
        "sustained_events_per_s": sustained,
        "sustained_recommendations_per_s": at_sustained["recommendations_per_s"],
        "search": steps,
        "latency_ms": latency,
    }


async def _search_sustained(
    servers: Servers,
    settings: Settings,
    urls: Sequence[str],
    supply: EventSupply,
    config: BenchConfig,
    name: str,
    start_rate: float,
) -> tuple[float, list[dict[str, Any]]]:
    """The highest sustained offered rate, as :func:`next_offered_rate` searches it."""
    outcomes: dict[float, list[bool]] = {}
    steps: list[dict[str, Any]] = []
    rate: float | None = start_rate
    while rate is not None:
        step = await offer_step(
            servers, settings, urls, supply.take(int(rate * config.step_seconds)), rate, config.catch_up_s
        )
        outcomes.setdefault(rate, []).append(step.kept_up)
        steps.append(
            {
                "offered_per_s": rate,
                "kept_up": step.kept_up,
                "catch_up_s": step.catch_up_s,
                "recommendations_per_s": step.recommendations * rate / len(step.sent_ms),
            }
        )
        verdict = "kept up" if step.kept_up else "fell behind"
        log(f"{name}: offered {rate:,.0f} events/s: {verdict} (caught up {step.catch_up_s:.2f} s after)")
        rate = next_offered_rate(outcomes, rate, config.search_steps)
    return sustained_rate(outcomes), steps


async def _naive(servers: Servers, supply: EventSupply, config: BenchConfig) -> float:
    with workers(servers, "naive", TRIVIAL_MODEL, module="benchmarks.naive_agent") as (settings, urls):
        rate = await drain_rate(servers, settings, urls, supply.take(config.naive_events))
    log(f"naive agent: {rate:,.0f} events/s")
    return rate


async def _scale_out(servers: Servers, config: BenchConfig, single: dict[str, Any]) -> dict[str, Any]:
    """Two workers, two partitions, trivial model: drain rate and latency at the rate that was
    50% of one worker's sustained rate."""
    supply = EventSupply(users=config.users, partitions=2, seed=101)
    backlog = supply.take(_backlog_events(config, servers.settings, single["drain_events_per_s"]))
    rate = single["sustained_events_per_s"] * 0.5
    steady = supply.take(int(rate * config.step_seconds))
    with workers(servers, "scale-out", TRIVIAL_MODEL, count=2, partitions=2) as (settings, urls):
        async with OutputReader(servers.bootstrap, settings.topic_recommendations, 2) as reader:
            drain = await drain_rate(servers, settings, urls, backlog)
            latency = await latency_step(servers, settings, urls, reader, steady, rate, config.catch_up_s)
    log(f"two workers: drain {drain:,.0f} events/s; at {rate:,.0f} events/s p99 {latency['p99']:.0f} ms")
    return {"workers": 2, "partitions": 2, "drain_events_per_s": drain, "latency_at_single_50pct_ms": latency}


async def run_bench(settings: Settings, config: BenchConfig) -> dict[str, Any]:
    ensure_model(settings.model_repository, settings.triton_model_name)
    report: dict[str, Any] = {"config": config.__dict__ | {"cpus": len(os.sched_getaffinity(0))}}
    with (
        tempfile.TemporaryDirectory(prefix="nextaction-bench-") as tmp,
        start_servers(settings, Path(tmp)) as phases,
    ):
        supply = EventSupply(users=config.users, seed=7)
        log(f"Triton up ({phases.triton_url}); a fresh broker per phase; {config.users:,} users")

        with fresh_broker(phases) as phase:
            raw_events = supply.take(150_000)
            ensure_topics(phase.bootstrap, settings.model_copy(update={"topic_events": "bench-raw"}))
            async with Producer(phase.bootstrap, "bench-raw") as producer:
                await producer.send(raw_events)
            report["raw_consume_events_per_s"] = await raw_consume_events_per_s(
                phase.bootstrap, "bench-raw", 1, len(raw_events)
            )
        log(f"ceiling: plain aiokafka consumption {report['raw_consume_events_per_s']:,.0f} events/s")

        history = _steady_state_history(config, settings)
        windows = sample_windows(supply, settings, history=history, count=2_000)
        model_only = await model_only_predictions_per_s(
            phases.triton_url,
            settings.triton_model_name,
            windows,
            in_flight=settings.triton_max_in_flight,
            seconds=config.step_seconds,
        )
        report["model_only_predictions_per_s"] = model_only
        log(f"ceiling: Triton real model, pre-built windows {model_only:,.0f} predictions/s")

        with fresh_broker(phases) as phase:
            report["naive_events_per_s"] = await _naive(phase, supply, config)
        with fresh_broker(phases) as phase:
            stream = await _product(phase, supply, config, "stream", TRIVIAL_MODEL, 15_000)
        report["stream"] = stream
        report["stream_events_per_s"] = stream["sustained_events_per_s"]
        with fresh_broker(phases) as phase:
            pipeline = await _product(
                phase, supply, config, "pipeline", settings.triton_model_name, model_only * 5
            )
        report["pipeline"] = pipeline
        report["pipeline_events_per_s"] = pipeline["sustained_events_per_s"]
        report["latency_ms"] = pipeline["latency_ms"]
        with fresh_broker(phases) as phase:
            report["scale_out"] = await _scale_out(phase, config, stream)

    log(f"window state with {config.state_users:,} users")
    with tempfile.TemporaryDirectory(prefix="nextaction-state-") as tmp:
        horizon_ms = int(settings.window_horizon_s * 1000)
        state = measure_state(config.state_users, settings.window_size, horizon_ms, Path(tmp))
    report["state"] = state
    report["state_bytes_per_user"] = state["rss_bytes_per_user"]
    return report


def run(out: Path | None, plot: Path, users: int) -> dict[str, Any]:
    """Run the bench, print its table, write the plot (and the figures as JSON to ``out``)."""
    started = time.monotonic()
    report = asyncio.run(run_bench(load_settings(), BenchConfig(users=users)))
    report["seconds"] = round(time.monotonic() - started, 1)
    print(render(report))
    plot_latency(report, plot)
    print(f"\nlatency plot: {plot}; took {report['seconds']:.0f} s")
    if out:
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures: {out}")
    return report
