"""Pipeline fixtures: a trained model repository, and workers run as real subprocesses."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from stream.admin import ensure_topics
from stream.demo import ensure_model
from stream.embedded import free_port
from stream.metrics_client import scrape
from stream.settings import Settings

_names = itertools.count()


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one model trained and exported on synthetic data (the demo's path)."""
    repository = tmp_path_factory.mktemp("model_repository")
    ensure_model(repository, "nextaction")
    return repository


@dataclass
class Worker:
    """One `nextaction worker` process with its own topics, consumer group and metrics port."""

    settings: Settings
    bootstrap: str
    env: dict[str, str]
    metrics_port: int
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> Worker:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stream", "worker", "--loglevel", "info"],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def log_tail(self) -> str:
        """The end of the worker's log: enough to show a rebalance when a wait fails."""
        return self.log.read_text()[-12_000:]

    def metrics(self) -> dict[str, float]:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def wait_consumed(self, count: int, timeout_s: float = 120) -> dict[str, float]:
        """Wait until ``count`` events are consumed and their batches published."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            try:
                values = self.metrics()
            except OSError:
                values = {}
            if values.get("nextaction_events_consumed_total", 0) >= count:
                time.sleep(1.0)  # let the last batch deliver its records
                return self.metrics()
            time.sleep(0.3)
        raise AssertionError(f"worker did not consume {count} events:\n{self.log_tail()}")

    def produce(self, messages: list[tuple[bytes, bytes]]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=2)
        for key, value in messages:
            producer.send(self.settings.topic_events, key=key, value=value)
        producer.flush()
        producer.close()

    def read(self, topic: str, idle_s: float = 1.5) -> list[ConsumerRecord]:
        """Every record of ``topic`` (all partitions), read until it stays idle."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        partitions = [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s:
            batch = consumer.poll(timeout_ms=200)
            for chunk in batch.values():
                records.extend(chunk)
                idle_since = time.monotonic()
        consumer.close()
        return records


@pytest.fixture
def worker_factory(kafka_broker: str, triton_server: object, tmp_path: Path) -> Iterator[object]:
    """``worker_factory(name=None)``: a Worker on fresh topics; same name = same group and topics."""
    started: list[Worker] = []

    def make(name: str | None = None) -> Worker:
        name = name or f"t{next(_names)}-{os.getpid()}"
        overrides = {
            "kafka_bootstrap": kafka_broker,
            "kafka_broker_kind": "tansu",  # the session broker is Tansu
            "triton_grpc_url": triton_server.grpc_url,  # type: ignore[attr-defined]
            "app_id": name,
            "topic_events": f"{name}.events",
            "topic_recommendations": f"{name}.recommendations",
            "topic_dead_letter": f"{name}.events.dlq",
            "metrics_port": free_port(),
            "data_dir": tmp_path / f"{name}-{len(started)}",
            "batch_max_wait_ms": 30,
        }
        settings = Settings(**overrides)
        env = {**os.environ, **{f"NEXTACTION_{k.upper()}": str(v) for k, v in overrides.items()}}
        ensure_topics(kafka_broker, settings)
        worker = Worker(settings, kafka_broker, env, settings.metrics_port, tmp_path / f"{name}.log")
        started.append(worker)
        return worker

    yield make
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.process.kill()
