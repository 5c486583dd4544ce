"""Pipeline fixtures: a trained model repository, and workers run as real subprocesses."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord

from stream.admin import ensure_topics
from stream.settings import Settings
from tools.demo_model import ensure_model
from tools.embedded import EmbeddedTriton
from tools.topic_reader import read_until_idle
from tools.worker_process import WorkerProcess

_names = itertools.count()


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one model trained and exported on synthetic data (the demo's path);
    its training checkpoint is kept beside it, in ``checkpoint``. These tests judge the
    pipeline, not the model, so it trains for a fifth of the demo's budget."""
    repository = tmp_path_factory.mktemp("model_repository")
    ensure_model(repository, "nextaction", checkpoint=repository.parent / "checkpoint", training_minutes=0.3)
    return repository


@pytest.fixture
def own_repository(model_repository: Path, tmp_path: Path) -> Path:
    """A copy of ``model_repository`` the test may add versions to."""
    repository = tmp_path / "repository"
    shutil.copytree(model_repository, repository)
    return repository


@pytest.fixture(scope="session")
def model_checkpoint(model_repository: Path) -> Path:
    """The checkpoint of the model in ``model_repository``, to export other versions from."""
    return model_repository.parent / "checkpoint"


@dataclass
class PipelineWorker:
    """One `nextaction worker` process with its own topics, consumer group and metrics port."""

    settings: Settings
    process: WorkerProcess

    @property
    def log(self) -> Path:
        return self.process.log_path

    def start(self) -> PipelineWorker:
        self.process.start()
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    def wait_acknowledged(self, count: int, timeout_s: float = 120) -> dict[str, float]:
        """Until ``count`` events are consumed and their batches delivered; the metrics then."""
        return self.process.wait_acknowledged(count, timeout_s)

    def produce(self, messages: list[tuple[bytes, bytes]]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks=1, linger_ms=2)
        for key, value in messages:
            producer.send(self.settings.topic_events, key=key, value=value)
        producer.flush()
        producer.close()

    def read(self, topic: str) -> list[ConsumerRecord]:
        """Every record of ``topic`` (all partitions), read until it stays idle."""
        return list(read_until_idle(self.settings.kafka_bootstrap, topic, self.settings.topic_partitions))


def pipeline_worker(
    broker: str,
    triton_url: str,
    name: str,
    workdir: Path,
    *,
    module: str = "cli",
    **settings_overrides: object,
) -> PipelineWorker:
    """A worker (not started) on topics and a consumer group named after ``name``, created on
    the broker; its data and log go under ``workdir``. Any setting may be overridden, the
    addresses too (a test's own Triton or broker)."""
    overrides = {
        "kafka_bootstrap": broker,
        "kafka_broker_kind": "tansu",  # the session broker is Tansu
        "triton_grpc_url": triton_url,
        "app_id": name,
        "topic_events": f"{name}.events",
        "topic_recommendations": f"{name}.recommendations",
        "topic_dead_letter": f"{name}.events.dlq",
        "data_dir": workdir / "data",
        "batch_max_wait_ms": 30,
        **settings_overrides,
    }
    settings = Settings(**overrides)
    ensure_topics(settings.kafka_bootstrap, settings)
    return PipelineWorker(settings, WorkerProcess(overrides, workdir / f"{name}.log", module=module))


@pytest.fixture
def worker_factory(
    kafka_broker: str, triton_server: EmbeddedTriton, tmp_path: Path
) -> Iterator[Callable[..., PipelineWorker]]:
    """``worker_factory(name=None, module="cli", **settings)``: a worker on fresh topics (same
    name = same group and topics), run as ``python -m <module> worker``."""
    started: list[WorkerProcess] = []

    def make(name: str | None = None, *, module: str = "cli", **settings_overrides: object) -> PipelineWorker:
        name = name or f"t{next(_names)}-{os.getpid()}"
        worker = pipeline_worker(
            kafka_broker,
            triton_server.grpc_url,
            name,
            tmp_path / f"{name}-{len(started)}",
            module=module,
            **settings_overrides,
        )
        started.append(worker.process)
        return worker

    yield make
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.process.kill()
