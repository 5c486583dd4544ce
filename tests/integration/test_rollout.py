"""A model version with another window length and top-k rolled out under a live worker, then
rolled back (`nextaction rollback`): the stream goes on without a failed batch or a lost event,
no record carries another user's items, and records follow the version Triton serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import tritonclient.grpc as grpcclient

from serving.synthetic import SyntheticConfig, generate_events
from serving.triton_config import SERVED_TOP_K
from tests.integration.conftest import PipelineWorker, pipeline_worker
from tools.embedded import EmbeddedTriton
from tools.polling import wait_until
from tools.replay import event_message

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_on(kafka_broker: str, tmp_path: Path) -> Iterator[Callable[[str], PipelineWorker]]:
    """A worker against this test's own Triton (worker_factory starts the session's as well)."""
    workers: list[PipelineWorker] = []

    def make(triton_grpc_url: str) -> PipelineWorker:
        workers.append(pipeline_worker(kafka_broker, triton_grpc_url, f"rollout-{os.getpid()}", tmp_path))
        return workers[-1]

    yield make
    for worker in workers:
        if worker.process.process is not None and worker.process.process.poll() is None:
            worker.process.process.kill()


def test_a_version_with_another_window_and_top_k_is_picked_up_by_a_live_worker(
    worker_on: Callable[[str], PipelineWorker],
    triton_server_factory: Callable[[Path], EmbeddedTriton],
    model_repository: Path,
    model_checkpoint: Path,
    tmp_path: Path,
) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(model_repository, repository)
    triton = triton_server_factory(repository)
    events = generate_events(SyntheticConfig(n_users=30, mean_events_per_user=12, seed=41))
    third = len(events) // 3
    before, after, rolled_back = events[:third], events[third : 2 * third], events[2 * third :]

    worker = worker_on(triton.grpc_url).start()
    worker.produce([event_message(event) for event in before])
    worker.wait_acknowledged(len(before))

    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "export",
            "--checkpoint",
            str(model_checkpoint),
            "--repository",
            str(repository),
            "--window",
            "30",
            "--served-top-k",
            "25",
            "--json",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    # --json: the result alone on stdout; the gate and the stages on stderr.
    result = json.loads(exported.stdout)
    assert (result["version"], result["window"], result["top_k"]) == (2, 30, 25)
    assert "publishing the version" in exported.stderr
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    wait_until(lambda: client.is_model_ready("nextaction", "2"), timeout_s=120, what="version 2 served")

    worker.produce([event_message(event) for event in after])
    metrics = worker.wait_acknowledged(2 * third)
    assert any(k.startswith("nextaction_model_info") and 'version="2"' in k for k in metrics)

    # Roll back: version 1's content is published as version 3 under the running worker.
    done = subprocess.run(
        [sys.executable, "-m", "cli", "rollback", "--repository", str(repository)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "to the content of version 1: published as version 3" in done.stdout
    wait_until(lambda: client.is_model_ready("nextaction", "3"), timeout_s=120, what="version 3 served")
    worker.produce([event_message(event) for event in rolled_back])
    metrics = worker.wait_acknowledged(len(events))
    assert any(k.startswith("nextaction_model_info") and 'version="3"' in k for k in metrics)

    records = [orjson.loads(r.value) for r in worker.read(worker.settings.topic_recommendations)]
    own = {event["event_id"]: event["user_id"] for event in events}
    for record in records:
        assert len(record["items"]) == worker.settings.published_top_k
        for item in record["items"]:  # explanations cite the record's own user's events only
            assert all(own[e["event_id"]] == record["user_id"] for e in item["explanation"]["events"])
    by_trigger = {record["trigger_event_id"]: record for record in records}
    for phase, version in ((after, "2"), (rolled_back, "3")):
        newest = {event["user_id"]: event["event_id"] for event in phase}
        assert set(newest.values()) <= by_trigger.keys()
        assert {by_trigger[event_id]["model_version"] for event_id in newest.values()} == {version}
    assert metrics["nextaction_batch_failures_total"] == 0
    # Nothing lost, nothing held back by either switch: every event acknowledged, and every
    # publication within 10 s of its event.
    assert metrics["nextaction_events_acknowledged_total"] == len(events)
    published = metrics["nextaction_event_to_publication_seconds_count"]
    assert metrics['nextaction_event_to_publication_seconds_bucket{le="10.0"}'] == published > 0
    log = worker.log.read_text()
    shapes = log.index("ModelShape(window=30, served_top_k=25")
    assert f"ModelShape(window=50, served_top_k={SERVED_TOP_K}" in log[shapes:]  # version 1's shape again
    assert worker.stop() == 0
