"""A worker fails fast on what would stop it later, and starts local servers only when asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import EXIT_UNREACHABLE, EXIT_USAGE
from serving.triton_config import SERVED_TOP_K
from tools.embedded import EmbeddedTriton
from tools.embedded.ports import free_port
from tools.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEXTACTION_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", "worker"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreachable_triton_stops_the_worker_before_it_joins(kafka_broker: str, tmp_path: Path) -> None:
    done = worker(
        {
            "NEXTACTION_KAFKA_BOOTSTRAP": kafka_broker,
            "NEXTACTION_TRITON_GRPC_URL": f"127.0.0.1:{free_port()}",
            "NEXTACTION_TRITON_READY_TIMEOUT_S": "2",
            "NEXTACTION_TOPIC_EVENTS": f"{tmp_path.name}.events",
        }
    )
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    assert "is not ready on Triton" in done.stderr and "Traceback" not in done.stderr


def worker_with_servers(
    kafka_broker: str, triton_server: EmbeddedTriton, tmp_path: Path, setting: str, value: str
) -> subprocess.CompletedProcess[str]:
    """A worker against the running servers with one setting changed."""
    triton_server.wait_for_model("nextaction")
    return worker(
        {
            "NEXTACTION_KAFKA_BOOTSTRAP": kafka_broker,
            "NEXTACTION_TRITON_GRPC_URL": triton_server.grpc_url,
            f"NEXTACTION_{setting}": value,
            "NEXTACTION_TOPIC_EVENTS": f"{tmp_path.name}.events",
        }
    )


def test_publishing_more_items_than_the_model_serves_is_refused(
    kafka_broker: str, triton_server: EmbeddedTriton, tmp_path: Path
) -> None:
    more = SERVED_TOP_K + 5
    done = worker_with_servers(kafka_broker, triton_server, tmp_path, "PUBLISHED_TOP_K", str(more))
    assert done.returncode == EXIT_USAGE, done.stderr
    assert f"NEXTACTION_PUBLISHED_TOP_K={more} exceeds the {SERVED_TOP_K} items" in done.stderr


def test_a_replication_factor_beyond_the_clusters_brokers_is_refused(
    kafka_broker: str, triton_server: EmbeddedTriton, tmp_path: Path
) -> None:
    done = worker_with_servers(kafka_broker, triton_server, tmp_path, "TOPIC_REPLICATION_FACTOR", "3")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "NEXTACTION_TOPIC_REPLICATION_FACTOR=3 needs as many brokers" in done.stderr
    assert "has 1" in done.stderr and "Traceback" not in done.stderr


def test_an_embedded_worker_starts_its_own_servers_and_stops_cleanly(
    model_repository: Path, tmp_path: Path
) -> None:
    overrides = {
        "model_repository": model_repository,
        "embedded_dir": tmp_path / "embedded",
        "data_dir": tmp_path / "worker",
    }
    process = WorkerProcess(overrides, tmp_path / "worker.log", arguments=["--embedded"])
    with process:
        assert process.wait_assigned()["nextaction_assigned_partitions"] == 1
        assert process.stop() == 0
    log = process.log_tail()
    assert list((tmp_path / "embedded" / "logs").glob("tansu-*.log")), log
    assert list((tmp_path / "embedded" / "logs").glob("tritonserver-*.log")), log
