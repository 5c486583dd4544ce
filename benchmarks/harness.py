"""The bench's test bench: servers, worker processes, and load steps measured from outside.

One Triton serves the real and the trivial model for the whole run; each phase gets a broker
of its own and workers on fresh topics. A step offers events at a rate and times how long the
workers need to catch up after the last one was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.load import OutputReader, Producer, worker_totals
from benchmarks.trivial_model import write_trivial_model
from benchmarks.workload import Message
from stream.admin import ensure_topics
from stream.settings import Settings
from tools.embedded import EmbeddedBroker, EmbeddedTriton
from tools.latency import event_to_recommendation_ms, percentiles
from tools.polling import wait_until
from tools.worker_process import WorkerProcess

__all__ = [
    "TRIVIAL_MODEL",
    "Servers",
    "Step",
    "drain_rate",
    "fresh_broker",
    "latency_step",
    "log",
    "offer_step",
    "start_servers",
    "worker_overrides",
    "workers",
]

TRIVIAL_MODEL = "nextaction-trivial"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Servers:
    triton_url: str
    workdir: Path
    settings: Settings
    bootstrap: str = ""  # the current phase's broker, see fresh_broker


@contextmanager
def start_servers(settings: Settings, workdir: Path, *, real_model: bool = True) -> Iterator[Servers]:
    """One Triton serving the real and the trivial model for the whole run; the trivial one
    alone without ``real_model`` (only the real model's config is needed then, no version)."""
    repository = workdir / "repository"
    repository.mkdir()
    real = settings.model_repository.resolve() / settings.triton_model_name
    models = [TRIVIAL_MODEL]
    if real_model:
        (repository / settings.triton_model_name).symlink_to(real, target_is_directory=True)
        models.append(settings.triton_model_name)
    write_trivial_model(real / "config.pbtxt", repository / TRIVIAL_MODEL)
    with EmbeddedTriton(repository, workdir / "embedded") as triton:
        for model in models:
            triton.wait_for_model(model)
        yield Servers(triton.grpc_url, workdir, settings)


@contextmanager
def fresh_broker(servers: Servers) -> Iterator[Servers]:
    """A broker of its own for one phase: the embedded broker keeps every record in memory,
    so what earlier phases wrote cannot weigh on a later one (the order of phases then
    changes nothing but the machine's noise)."""
    with EmbeddedBroker(servers.workdir / "embedded") as broker:
        yield replace(servers, bootstrap=broker.bootstrap)


def worker_overrides(servers: Servers, name: str, model: str, *, partitions: int = 1) -> dict[str, Any]:
    """Settings of a worker on the phase's servers, with topics and a consumer group of its
    own, named after ``name``."""
    return {
        "kafka_bootstrap": servers.bootstrap,
        "kafka_broker_kind": "tansu",
        "triton_grpc_url": servers.triton_url,
        "triton_model_name": model,
        "app_id": f"bench-{name}",
        "topic_events": f"bench-{name}.events",
        "topic_recommendations": f"bench-{name}.recommendations",
        "topic_dead_letter": f"bench-{name}.dlq",
        "topic_partitions": partitions,
    }


@contextmanager
def workers(
    servers: Servers, name: str, model: str, *, count: int = 1, partitions: int = 1, module: str = "cli"
) -> Iterator[tuple[Settings, list[str]]]:
    """``count`` workers in one consumer group on fresh topics; yields settings and metrics URLs."""
    overrides = worker_overrides(servers, name, model, partitions=partitions)
    settings = Settings(**overrides)
    ensure_topics(servers.bootstrap, settings)
    with ExitStack() as stack:
        processes = [
            stack.enter_context(
                WorkerProcess(
                    {**overrides, "data_dir": servers.workdir / f"{name}-{n}"},
                    servers.workdir / f"worker-{name}-{n}.log",
                    loglevel="warning",
                    module=module,
                )
            )
            for n in range(count)
        ]
        for process in processes:
            process.wait_assigned()
        if count > 1:
            time.sleep(settings.broker_session_timeout_s)  # let the group settle on its final split
        yield settings, [process.metrics_url for process in processes]


async def _totals(urls: Sequence[str]) -> dict[str, float]:
    return await asyncio.to_thread(worker_totals, urls)


async def _wait_processed(urls: Sequence[str], target: float, timeout_s: float) -> None:
    """Until the workers have published the outcome of ``target`` valid events in all."""
    await asyncio.to_thread(
        wait_until,
        lambda: worker_totals(urls)["processed"] >= target,
        timeout_s=timeout_s,
        what=f"{target:,.0f} events processed",
    )


async def drain_rate(
    servers: Servers, settings: Settings, urls: Sequence[str], messages: list[Message]
) -> float:
    """Events/s while the workers work off a backlog of ``messages``."""
    start = (await _totals(urls))["processed"]
    async with Producer(servers.bootstrap, settings.topic_events) as producer:
        await producer.send(messages)
    first_at = None
    while True:
        now, processed = time.monotonic(), (await _totals(urls))["processed"]
        if first_at is None and processed > start:
            first_at, first = now, processed
        if processed >= start + len(messages):
            assert first_at is not None
            return (processed - first) / max(now - first_at, 1e-3)
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Step:
    offered_per_s: float
    sent_ms: list[float]
    catch_up_s: float  # from the last send until the workers had published for every event
    allowed_s: float
    recommendations: float

    @property
    def kept_up(self) -> bool:
        return self.catch_up_s <= self.allowed_s


async def offer_step(
    servers: Servers,
    settings: Settings,
    urls: Sequence[str],
    messages: list[Message],
    rate: float,
    allowed_catch_up_s: float,
) -> Step:
    """Offer ``messages`` at ``rate`` and time how long the workers need to catch up after."""
    before = await _totals(urls)
    async with Producer(servers.bootstrap, settings.topic_events) as producer:
        sent_ms = await producer.offer(messages, rate)
    done_at = time.monotonic()
    # A step the workers cannot finish in time did not keep up: the catch-up time says so.
    with contextlib.suppress(TimeoutError):
        await _wait_processed(urls, before["processed"] + len(messages), timeout_s=120)
    catch_up = time.monotonic() - done_at
    after = await _totals(urls)
    return Step(
        offered_per_s=rate,
        sent_ms=sent_ms,
        catch_up_s=catch_up,
        allowed_s=allowed_catch_up_s,
        recommendations=after["published"] - before["published"],
    )


async def latency_step(
    servers: Servers,
    settings: Settings,
    urls: Sequence[str],
    reader: OutputReader,
    messages: list[Message],
    rate: float,
    allowed_catch_up_s: float,
) -> dict[str, float]:
    """Event-to-recommendation percentiles of one offered step."""
    step = await offer_step(servers, settings, urls, messages, rate, allowed_catch_up_s)
    await asyncio.sleep(1.0)  # the last batches' records reach the reader
    latencies = event_to_recommendation_ms(
        ((m.user_id, m.event_id, at) for m, at in zip(messages, step.sent_ms, strict=True)), reader.published
    )
    return {
        "offered_per_s": rate,
        **percentiles(latencies),
        "events": len(latencies),
        "events_per_recommendation": len(messages) / max(step.recommendations, 1.0),
    }
