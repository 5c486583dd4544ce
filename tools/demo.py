"""The demo: the whole pipeline on embedded servers, from a fresh clone, in a few minutes.

Trains and exports a small model if the repository has none, starts broker, Triton and one
worker, replays synthetic events (with a few invalid ones), prints a live sample of
recommendations and a summary, and shuts everything down.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from serving.synthetic import SyntheticConfig, generate_events
from stream.admin import ensure_topics
from stream.embedded import EmbeddedBroker, EmbeddedTriton, free_port
from stream.latency import event_to_recommendation_ms
from stream.metrics_client import scrape
from stream.replay import invalid_samples, replay
from stream.settings import Settings
from stream.worker_process import wait_until_assigned, worker_process

__all__ = ["DemoSummary", "run_demo"]

_SYNTHETIC_SEED = 7


@dataclass
class DemoSummary:
    events_in: int
    invalid: int
    dead_lettered: int
    recommendations: int
    latencies_ms: list[float] = field(repr=False)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def render(self) -> str:
        return (
            f"events in {self.events_in:,} | invalid {self.invalid} "
            f"(dead-lettered {self.dead_lettered}) | recommendations out {self.recommendations:,} | "
            f"event-to-recommendation p50 {self.percentile(50):.0f} ms, "
            f"p99 {self.percentile(99):.0f} ms"
        )


def run_demo(settings: Settings, *, users: int, rate_per_s: float, show: int) -> DemoSummary:
    ensure_model(settings.model_repository, settings.triton_model_name)
    with ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap
        if settings.embedded_kafka:
            bootstrap = stack.enter_context(EmbeddedBroker(settings.embedded_dir)).bootstrap
            print(f"[demo] broker (Tansu) on {bootstrap}")
        triton_url = settings.triton_grpc_url
        if settings.embedded_triton:
            triton = stack.enter_context(EmbeddedTriton(settings.model_repository, settings.embedded_dir))
            triton.wait_for_model(settings.triton_model_name)
            triton_url = triton.grpc_url
            print(f"[demo] Triton on {triton_url} (metrics {triton.metrics_url})")
        ensure_topics(bootstrap, settings)
        metrics_port = free_port()
        overrides = {
            "kafka_bootstrap": bootstrap,
            "triton_grpc_url": triton_url,
            "metrics_port": metrics_port,
            # The worker sees an address, not that it is the embedded Tansu: say so.
            "kafka_broker_kind": "tansu" if settings.embedded_kafka else settings.kafka_broker_kind,
            "data_dir": tempfile.mkdtemp(prefix="nextaction-worker-"),
        }
        worker = stack.enter_context(worker_process(overrides))
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        print(f"[demo] worker pid {worker.pid}, metrics {metrics_url}")
        wait_until_assigned(metrics_url, worker)

        events = _synthetic_events(users)
        messages = _with_invalid(events)
        invalid = len(messages) - len(events)
        watcher = _OutputWatcher(bootstrap, settings, show=show)
        watcher.start()
        sent_at: dict[str, float] = {}

        def on_sent(key: bytes, value: bytes) -> None:
            sent_at[_event_id(value)] = time.time()
            if len(sent_at) % 2000 == 0:
                print(f"[demo] replayed {len(sent_at):,}/{len(messages):,} events")

        print(f"[demo] replaying {len(messages):,} events ({invalid} invalid) at {rate_per_s:.0f}/s")
        replay(bootstrap, settings.topic_events, messages, rate_per_s=rate_per_s, on_sent=on_sent)
        _wait_until_processed(metrics_port, len(messages), watcher)
        watcher.stop()
        worker.terminate()
        worker.wait(timeout=60)
        print(f"[demo] worker stopped cleanly (exit code {worker.returncode})")
    return DemoSummary(
        events_in=len(messages),
        invalid=invalid,
        dead_lettered=watcher.dead_lettered,
        recommendations=watcher.recommendations,
        latencies_ms=event_to_recommendation_ms(
            [(e["user_id"], e["event_id"], sent_at[e["event_id"]] * 1000) for e in events],
            watcher.published_ms,
        ),
    )


def ensure_model(repository: Path, model_name: str) -> None:
    """Train and export a small model on synthetic data unless a version is already there."""
    model_dir = repository / model_name
    if model_dir.is_dir() and any(p.name.isdigit() for p in model_dir.iterdir()):
        return
    print(f"[demo] no model in {model_dir}: training a small one on synthetic data (about a minute)")
    with tempfile.TemporaryDirectory(prefix="nextaction-train-") as tmp:
        data = Path(tmp) / "events.jsonl"
        checkpoint = Path(tmp) / "checkpoint"
        for argv in (
            ["generate", "--out", str(data), "--seed", "0"],
            ["train", "--data", str(data), "--out", str(checkpoint), "--time-budget", "1.5"],
            ["export", "--checkpoint", str(checkpoint), "--repository", str(repository)],
        ):
            # A child process: the stream side never imports torch.
            subprocess.run([sys.executable, "-m", "serving", *argv], check=True)


def _synthetic_events(users: int) -> list[dict[str, Any]]:
    now_ms = int(time.time() * 1000)
    config = SyntheticConfig(n_users=users, seed=_SYNTHETIC_SEED, start_ms=now_ms - 30 * 86_400_000)
    return generate_events(config)


def _with_invalid(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    messages = [(str(e["user_id"]).encode(), orjson.dumps(e)) for e in events]
    bad = invalid_samples(str(events[0]["user_id"]))
    step = max(1, len(messages) // (len(bad) + 1))
    for position, sample in enumerate(bad, start=1):
        messages.insert(position * step, sample)
    return messages


def _event_id(value: bytes) -> str:
    try:
        doc = orjson.loads(value)
        return str(doc.get("event_id", id(value))) if isinstance(doc, dict) else str(id(value))
    except orjson.JSONDecodeError:
        return str(id(value))


class _OutputWatcher:
    """Reads the output topics in a thread: counts, samples, and publication times per user."""

    def __init__(self, bootstrap: str, settings: Settings, *, show: int) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partitions = range(settings.topic_partitions)
        self._recommendations_topic = settings.topic_recommendations
        self._consumer.assign(
            [TopicPartition(settings.topic_recommendations, p) for p in partitions]
            + [TopicPartition(settings.topic_dead_letter, p) for p in partitions]
        )
        self._show = show
        self.recommendations = 0
        self.dead_lettered = 0
        # user id -> (trigger event id, publication time in epoch ms) of each recommendation
        self.published_ms: dict[str, list[tuple[str, float]]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-output", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()

    def _run(self) -> None:
        shown = 0
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=200).values():
                for record in records:
                    if record.topic != self._recommendations_topic:
                        self.dead_lettered += 1
                        continue
                    self.recommendations += 1
                    doc = orjson.loads(record.value)
                    self.published_ms[doc["user_id"]].append((doc["trigger_event_id"], record.timestamp))
                    if shown < self._show and self.recommendations % 97 == 1:
                        shown += 1
                        print(render_recommendation(doc))


def render_recommendation(doc: dict[str, Any]) -> str:
    lines = [
        f"\n  user {doc['user_id']} after event {doc['trigger_event_id']} "
        f"(model {doc['model_name']} v{doc['model_version']}):"
    ]
    for item in doc["items"][:3]:
        lines.append(f"    {item['rank']}. {item['item_id']}  score {item['score']:.3f}  ")
        lines.append(f"       {item['explanation']['sentence']}")
    return "\n".join(lines)


def _wait_until_processed(metrics_port: int, expected: int, watcher: _OutputWatcher) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        values = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        consumed = values.get("nextaction_events_consumed_total", 0)
        published = values.get("nextaction_recommendations_published_total", 0)
        if consumed >= expected and watcher.recommendations >= published > 0:
            return
        time.sleep(0.5)
    raise TimeoutError(f"worker did not process all {expected} events within 120 s")
