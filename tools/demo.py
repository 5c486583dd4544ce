"""The demo: the whole pipeline on embedded servers, from a fresh clone, in a few minutes.

Trains and exports a small model if the repository has none, starts broker, Triton and one
worker, replays synthetic events (with a few invalid ones), prints a live sample of
recommendations and a summary, and shuts everything down (with ``--keep-running``, once
stopped by Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import signal
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

from serving.synthetic import DAY_MS, SyntheticConfig, generate_events, item_catalogue, write_events_jsonl
from stream.admin import ensure_topics
from stream.kafka_security import KafkaSecurity
from stream.settings import Settings
from tools.demo_model import ensure_model
from tools.latency import event_to_recommendation_ms, percentiles
from tools.local_servers import start_missing_servers
from tools.polling import wait_until
from tools.replay import event_message, invalid_samples, replay
from tools.worker_process import WorkerProcess

__all__ = ["DemoSummary", "run_demo"]

_SYNTHETIC_SEED = 7
_HISTORY_DAYS = 30


@dataclass
class DemoSummary:
    events_in: int
    invalid: int
    dead_lettered: int
    recommendations: int
    latencies_ms: list[float] = field(repr=False)

    def render(self) -> str:
        latency = percentiles(self.latencies_ms, (50, 99))
        return (
            f"events in {self.events_in:,} | invalid {self.invalid} "
            f"(dead-lettered {self.dead_lettered}) | recommendations out {self.recommendations:,} | "
            f"event-to-recommendation p50 {latency['p50']:.0f} ms, p99 {latency['p99']:.0f} ms"
        )


def run_demo(
    settings: Settings, *, users: int, rate_per_s: float, show: int, keep_running: bool = False
) -> DemoSummary:
    """Run the demo and print its summary; with ``keep_running`` the pipeline then stays up
    until SIGINT or SIGTERM."""
    ensure_model(settings.model_repository, settings.triton_model_name)
    with ExitStack() as stack:
        settings = start_missing_servers(settings, stack)
        bootstrap = settings.kafka_bootstrap
        print(f"[demo] broker on {bootstrap}, Triton on {settings.triton_grpc_url}")
        ensure_topics(bootstrap, settings)
        data_dir = Path(tempfile.mkdtemp(prefix="nextaction-worker-"))
        overrides = {
            "kafka_bootstrap": bootstrap,
            "triton_grpc_url": settings.triton_grpc_url,
            "kafka_broker_kind": settings.kafka_broker_kind,
            "data_dir": str(data_dir),
            # Explanations name the synthetic shop's items by their titles.
            "catalogue_path": str(_write_catalogue(data_dir / "catalogue.jsonl")),
        }
        log_path = settings.embedded_dir / "logs" / "demo-worker.log"
        worker = stack.enter_context(WorkerProcess(overrides, log_path, loglevel="warning"))
        print(f"[demo] worker log {log_path}, metrics {worker.metrics_url}")
        worker.wait_assigned()

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
        replay(
            bootstrap,
            settings.topic_events,
            messages,
            rate_per_s=rate_per_s,
            on_sent=on_sent,
            security=KafkaSecurity.from_settings(settings),
        )
        published = worker.wait_acknowledged(len(messages))["nextaction_recommendations_published_total"]
        wait_until(
            lambda: watcher.recommendations >= published,
            timeout_s=30,
            what=f"reading the {published:,.0f} published recommendations",
        )
        watcher.stop()
        summary = DemoSummary(
            events_in=len(messages),
            invalid=invalid,
            dead_lettered=watcher.dead_lettered,
            recommendations=watcher.recommendations,
            latencies_ms=event_to_recommendation_ms(
                [(e["user_id"], e["event_id"], sent_at[e["event_id"]] * 1000) for e in events],
                watcher.published_ms,
            ),
        )
        print(f"\n[demo] summary: {summary.render()}", flush=True)
        if keep_running:
            _serve_until_stopped(settings, worker.metrics_url)
        print(f"[demo] worker stopped cleanly (exit code {worker.stop()})")
    return summary


def _serve_until_stopped(settings: Settings, metrics_url: str) -> None:
    """Print where the running pipeline is, then wait for SIGINT or SIGTERM; the caller's exit
    stack then stops the worker and the servers in order."""
    bootstrap = settings.kafka_bootstrap
    print(
        "\n[demo] the pipeline keeps running; point your own producers and consumers at it:\n"
        f"[demo] bootstrap {bootstrap}\n"
        f"[demo] events topic {settings.topic_events} (key = user_id, JSON value)\n"
        f"[demo] recommendations topic {settings.topic_recommendations}\n"
        f"[demo] dead-letter topic {settings.topic_dead_letter}\n"
        f"[demo] triton grpc {settings.triton_grpc_url}\n"
        f"[demo] metrics {metrics_url}\n"
        f"[demo] watch it: NEXTACTION_KAFKA_BOOTSTRAP={bootstrap} nextaction watch\n"
        "[demo] Ctrl-C or SIGTERM stops it",
        flush=True,
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("[demo] stopping", flush=True)


def _synthetic_events(users: int) -> list[dict[str, Any]]:
    now_ms = int(time.time() * 1000)
    config = SyntheticConfig(n_users=users, seed=_SYNTHETIC_SEED, start_ms=now_ms - _HISTORY_DAYS * DAY_MS)
    return generate_events(config)


def _write_catalogue(path: Path) -> Path:
    """The synthetic shop's titles (they depend on the seed and the catalogue's size only)."""
    write_events_jsonl(item_catalogue(SyntheticConfig(seed=_SYNTHETIC_SEED)), path)
    return path


def _with_invalid(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    messages = [event_message(event) for event in events]
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
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            **KafkaSecurity.from_settings(settings).client_kwargs(),
        )
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
        name = item.get("title") or item["item_id"]
        lines.append(
            f"    {item['rank']}. {name}  score {item['score']:.3f}  ({item.get('source', 'model')})"
        )
        lines.append(f"       {item['explanation']['sentence']}")
    if doc.get("next_event"):
        lines.append(f"    {doc['next_event']['sentence']}")
    return "\n".join(lines)
