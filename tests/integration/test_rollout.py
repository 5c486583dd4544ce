"""A model version with another window length and top-k rolled out under a live worker: the
stream goes on without a failed batch, and no record carries another user's items."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import tritonclient.grpc as grpcclient

from serving.synthetic import SyntheticConfig, generate_events
from tools.embedded import EmbeddedTriton
from tools.polling import wait_until
from tools.replay import event_message

pytestmark = pytest.mark.integration


def test_a_version_with_another_window_and_top_k_is_picked_up_by_a_live_worker(
    worker_factory,
    triton_server_factory: Callable[[Path], EmbeddedTriton],
    model_repository: Path,
    model_checkpoint: Path,
    tmp_path: Path,
) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(model_repository, repository)
    triton = triton_server_factory(repository)
    events = generate_events(SyntheticConfig(n_users=30, mean_events_per_user=12, seed=41))
    before, after = events[: len(events) // 2], events[len(events) // 2 :]

    worker = worker_factory(triton_grpc_url=triton.grpc_url).start()
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
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    wait_until(lambda: client.is_model_ready("nextaction", "2"), timeout_s=120, what="version 2 served")

    worker.produce([event_message(event) for event in after])
    metrics = worker.wait_acknowledged(len(events))

    records = [orjson.loads(r.value) for r in worker.read(worker.settings.topic_recommendations)]
    own = {event["event_id"]: event["user_id"] for event in events}
    for record in records:
        assert len(record["items"]) == worker.settings.published_top_k
        for item in record["items"]:  # explanations cite the record's own user's events only
            assert all(own[e["event_id"]] == record["user_id"] for e in item["explanation"]["events"])
    newest = {event["user_id"]: event["event_id"] for event in after}
    by_trigger = {record["trigger_event_id"]: record for record in records}
    assert set(newest.values()) <= by_trigger.keys()
    assert {by_trigger[event_id]["model_version"] for event_id in newest.values()} == {"2"}
    assert metrics["nextaction_batch_failures_total"] == 0
    assert "ModelShape(window=30, served_top_k=25" in worker.log.read_text()
    assert worker.stop() == 0
